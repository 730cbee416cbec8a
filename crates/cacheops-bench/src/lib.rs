//! Criterion micro-benchmarks of cacheops' hot paths live in `benches/hot_paths.rs`:
//! `cargo bench -p cacheops-bench`. The end-to-end workload is `cargo xtask bench`
//! (see `BENCHMARKS.md`).
//!
//! This unpublished crate also compiles the README's examples as doctests (they read files
//! outside any published package) and checks, in `tests/readme.rs`, that the README's install
//! lines are the ones CI builds with.

/// The README's examples, compiled as doctests so that they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The examples of `docs/fragments.md`.
#[doc = include_str!("../../../docs/fragments.md")]
#[cfg(doctest)]
pub struct FragmentsDoctests;

/// The examples of `docs/views.md`.
#[doc = include_str!("../../../docs/views.md")]
#[cfg(doctest)]
pub struct ViewsDoctests;
