//! Not for upstream: marks this copy as carrying cacheops' patches, so that the build script
//! of `cacheops-sea-orm` (feature `transparent`) can tell it from the crates.io release and
//! explain what to add to Cargo.toml instead of failing inside SeaORM.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::metadata=patch=1");
}
