//! Criterion micro-benchmarks of cacheops' hot paths live in `benches/hot_paths.rs`:
//! `cargo bench -p cacheops-bench`. The end-to-end workload is `cargo xtask bench`
//! (see `BENCHMARKS.md`).
