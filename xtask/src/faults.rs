//! The faults `cargo xtask stress --fault …` injects, each on a `redis-server` of its own (or on
//! the database side), on a schedule relative to the timed phase.

use std::time::Duration;

use crate::redis_server::OwnRedis;

type Res<T> = Result<T, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault (the shared Redis).
    None,
    /// `SHUTDOWN` (AOF `appendfsync always`) mid-run, one second down, restart.
    Restart,
    /// `SAVE` at a quarter of the run, `kill -9` at half, restart from that older RDB.
    CrashSnapshot,
    /// No persistence: `kill -9` at half, restart empty.
    RestartEmpty,
    /// `maxmemory` with `noeviction`: filled past the limit from a third to two thirds of the run.
    Oom,
    /// `CLIENT PAUSE 800 WRITE` five times (what `FAILOVER` does).
    Pause,
    /// Writers drop one write future in four after a random 0–20 ms (any await point, COMMIT
    /// included).
    Cancel,
    /// Readers' transactions run at REPEATABLE READ by the connection's default.
    RepeatableRead,
    /// `maxmemory 4mb` with `volatile-lru`: eviction all along.
    Eviction,
    /// A Sentinel group of our own (`--topology sentinel`): `SENTINEL FAILOVER` at 40 % of the
    /// run.
    Failover,
}

impl Fault {
    pub const NAMES: &'static str =
        "restart, crash-snapshot, restart-empty, oom, pause, cancel, repeatable-read, eviction, failover";

    pub fn parse(s: &str) -> Res<Fault> {
        Ok(match s {
            "" | "none" => Fault::None,
            "restart" => Fault::Restart,
            "crash-snapshot" => Fault::CrashSnapshot,
            "restart-empty" => Fault::RestartEmpty,
            "oom" => Fault::Oom,
            "pause" => Fault::Pause,
            "cancel" => Fault::Cancel,
            "repeatable-read" => Fault::RepeatableRead,
            "eviction" => Fault::Eviction,
            "failover" => Fault::Failover,
            other => return Err(format!("unknown fault {other:?} ({})", Fault::NAMES)),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Restart => "restart",
            Fault::CrashSnapshot => "crash-snapshot",
            Fault::RestartEmpty => "restart-empty",
            Fault::Oom => "oom",
            Fault::Pause => "pause",
            Fault::Cancel => "cancel",
            Fault::RepeatableRead => "repeatable-read",
            Fault::Eviction => "eviction",
            Fault::Failover => "failover",
        }
    }

    /// The `redis-server` arguments of its own server, or `None` for the shared one.
    pub fn server_args(self) -> Option<Vec<&'static str>> {
        match self {
            Fault::None | Fault::Cancel | Fault::RepeatableRead | Fault::Failover => None,
            Fault::Restart => Some(vec!["--appendonly", "yes", "--appendfsync", "always"]),
            Fault::CrashSnapshot => Some(vec!["--appendonly", "no"]),
            Fault::RestartEmpty | Fault::Pause => Some(vec![]),
            Fault::Oom => Some(vec!["--maxmemory", "48mb", "--maxmemory-policy", "noeviction"]),
            Fault::Eviction => Some(vec![
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--maxmemory",
                "4mb",
                "--maxmemory-policy",
                "volatile-lru",
            ]),
        }
    }

    /// Runs the fault's schedule over a timed phase of `seconds`.
    pub async fn inject(self, server: Option<&mut OwnRedis>, seconds: u64) -> Res<()> {
        let Some(s) = server else { return Ok(()) };
        let at = |fraction: f64| Duration::from_secs_f64(seconds as f64 * fraction);
        let block = |f: &mut dyn FnMut() -> Res<()>| tokio::task::block_in_place(f);
        match self {
            Fault::Restart => {
                tokio::time::sleep(at(0.5)).await;
                println!("# restarting redis-server (port {})", s.port);
                block(&mut || {
                    s.stop();
                    std::thread::sleep(Duration::from_secs(1));
                    s.restart()
                })?;
            }
            Fault::CrashSnapshot => {
                tokio::time::sleep(at(0.25)).await;
                println!("# SAVE (the snapshot the server will come back with)");
                s.cli(&["SAVE"]);
                tokio::time::sleep(at(0.25)).await;
                println!("# kill -9 redis-server; restart from the older snapshot");
                block(&mut || s.crash_and_restart())?;
            }
            Fault::RestartEmpty => {
                tokio::time::sleep(at(0.5)).await;
                println!("# kill -9 redis-server; restart empty");
                block(&mut || s.crash_and_restart())?;
            }
            Fault::Oom => {
                tokio::time::sleep(at(1.0 / 3.0)).await;
                println!("# filling redis-server past maxmemory");
                s.cli(&["EVAL", "for i = 1, 6000 do redis.call('SET', 'junk:' .. i, string.rep('x', 10000)) end", "0"]);
                println!("# OOM: {}", s.cli(&["SET", "junk:probe", "x"]).trim());
                tokio::time::sleep(at(1.0 / 3.0)).await;
                s.cli(&["EVAL", "for i = 1, 6000 do redis.call('DEL', 'junk:' .. i) end", "0"]);
                println!("# memory freed");
            }
            Fault::Pause => {
                for _ in 0..5 {
                    tokio::time::sleep(at(0.15)).await;
                    s.cli(&["CLIENT", "PAUSE", "800", "WRITE"]);
                }
                println!("# paused writes 5 × 800 ms");
            }
            Fault::None | Fault::Cancel | Fault::RepeatableRead | Fault::Eviction | Fault::Failover => {}
        }
        Ok(())
    }
}
