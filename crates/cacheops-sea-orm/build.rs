//! Feature `transparent` needs SeaORM with cacheops' patches (see `vendor/sea-orm-patches`).
//! The patched copy says so through `links` metadata; with the crates.io release this script
//! stops the build before anything is compiled against it, and names the lines to add.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_SEA_ORM_CACHEOPS_PATCH");
    if std::env::var_os("CARGO_FEATURE_TRANSPARENT").is_none() {
        return;
    }
    let drivers = ["POSTGRES", "MYSQL", "SQLITE"];
    if !drivers.iter().any(|d| std::env::var_os(format!("CARGO_FEATURE_{d}")).is_some()) {
        fail(
            "cacheops-sea-orm: the `transparent` feature needs a database driver feature: `postgres`, `mysql` or `sqlite`.",
        );
    }
    if std::env::var_os("DEP_SEA_ORM_CACHEOPS_PATCH").is_none() {
        fail(concat!(
            "cacheops-sea-orm: the `transparent` feature needs SeaORM with cacheops' patches, ",
            "and this build uses the crates.io release.\n",
            "Add to the Cargo.toml of your workspace root:\n\n",
            "    [patch.crates-io]\n",
            "    sea-orm = { git = \"https://github.com/cacheops-rs/cacheops\", tag = \"v0.1.0\" }\n\n",
            "(from a checkout of cacheops: sea-orm = { path = \"<cacheops>/vendor/sea-orm\" }),\n",
            "or drop the feature: writes, `.cache()` on selects and `cached_as` work with stock SeaORM.",
        ));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("\n{message}\n");
    std::process::exit(1);
}
