//! The README's first command works: the demo runs on embedded defaults (SQLite in memory, the
//! in-process cache) and shows hits, then exactly the invalidations its write causes.

use std::process::Command;

#[test]
fn the_demo_runs_on_embedded_defaults() {
    let out = Command::new(env!("CARGO_BIN_EXE_cacheops-demo"))
        .env_remove("DATABASE_URL")
        .env_remove("CACHEOPS_REDIS")
        .env_remove("CACHEOPS_PREFIX")
        .env_remove("CACHEOPS_ENABLED")
        .output()
        .expect("the demo starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("database: SQLite (in memory), cache: in-process"), "{stdout}");
    assert!(
        stdout.contains("round 2:") && stdout.contains("→ 0 database queries"),
        "second round from the cache: {stdout}"
    );
    assert!(stdout.contains("category 3 = 1 posts → 1 database queries (old value invalidated)"), "{stdout}");
    assert!(stdout.contains("category 4 = 2 posts → 0 database queries (untouched)"), "{stdout}");
    assert!(stdout.contains("category 5 = 1 posts → 1 database queries (new value invalidated)"), "{stdout}");
}
