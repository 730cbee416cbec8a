//! Project tasks.
//!
//! * `cargo xtask bench [--n 2000] [--backend redis|memory|all] [--extras|--no-extras]` — the
//!   shared workload (`../shared/bench/WORKLOAD.md`) against PostgreSQL, through the SeaORM
//!   `CachedConnection`, per backend; then the extra figures (concurrent hit throughput next to
//!   Redis' own, invalidation cost with 1 / 1 000 / 100 000 dependents, Redis memory after expiry).
//! * `cargo xtask stress [--seconds 10] [--processes 2] [--fault NAME] [--redis-restart]
//!   [--eviction]` — writers and readers in several OS processes over PostgreSQL + Redis, every
//!   read checked against the committed history; exits non-zero on any stale read. Faults
//!   (`xtask/src/faults.rs`): restart, crash-snapshot, restart-empty, oom, pause, cancel,
//!   repeatable-read, eviction (`--redis-restart`, `--eviction` are the first and last), and
//!   failover (`SENTINEL FAILOVER` mid-run). `--topology cluster|sentinel` runs on a 3-master
//!   cluster or a Sentinel group of its own and prints each node's keys and commands.
//!
//! * `cargo xtask bounds [--rows 200000] [--schemes 16000] [--queries 1000000]` — what the caps
//!   bound: peak memory and Redis time of a bulk DELETE, Redis time of a one-row write on a table
//!   with many query shapes, an invalidation on the in-process backend holding many queries.
//!
//! Servers: PostgreSQL on 127.0.0.1:5432 (user `postgres`, database `test`; override with
//! `XTASK_PG`), Redis on 127.0.0.1:6379 (override with `XTASK_REDIS`). Every network address
//! used is a loopback one; the stress variants start their own `redis-server` on a free
//! loopback port.

mod bench;
mod bounds;
mod faults;
mod redis_server;
mod schema;
mod stress;
mod topology;
mod util;
mod views;

use std::process::ExitCode;

const USAGE: &str = "usage:
  cargo xtask bench  [--n 2000] [--backend redis|memory|all] [--no-extras] [--seed 42]
  cargo xtask stress [--seconds 10] [--processes 2] [--fault NAME] [--redis-restart] [--eviction] [--rows N]
                     [--topology standalone|cluster|sentinel]
                     faults: restart, crash-snapshot, restart-empty, oom, pause, cancel, repeatable-read, eviction,
                     failover (on a Sentinel group)
  cargo xtask bounds [--rows 200000] [--schemes 16000] [--queries 1000000]";

/// `--name value` options and `--flag`s.
pub struct Args {
    items: Vec<String>,
}

impl Args {
    fn new(items: Vec<String>) -> Args {
        Args { items }
    }

    /// The value after `--name`, parsed.
    pub fn value<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.items.iter().position(|a| a == name) {
            None => Ok(default),
            Some(i) => {
                let raw = self.items.get(i + 1).ok_or_else(|| format!("{name} needs a value"))?;
                raw.parse().map_err(|_| format!("{name}: cannot parse {raw:?}"))
            }
        }
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String, String> {
        self.value(name, default.to_owned())
    }

    pub fn flag(&self, name: &str) -> bool {
        self.items.iter().any(|a| a == name)
    }

    /// Rejects options nobody asked for.
    pub fn check(&self, known_values: &[&str], known_flags: &[&str]) -> Result<(), String> {
        let mut i = 0;
        while i < self.items.len() {
            let a = &self.items[i];
            if known_values.contains(&a.as_str()) {
                i += 2;
            } else if known_flags.contains(&a.as_str()) {
                i += 1;
            } else {
                return Err(format!("unknown argument {a:?}"));
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let cmd = argv.remove(0);
    let args = Args::new(argv);
    let res = match cmd.as_str() {
        "bench" => bench::main(&args),
        "stress" => stress::main(&args),
        "bounds" => bounds::main(&args),
        stress::WORKER_CMD => stress::worker_main(&args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(true)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask {cmd}: {e}");
            ExitCode::from(2)
        }
    }
}
