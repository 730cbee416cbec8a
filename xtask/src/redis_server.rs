//! A redis-server of our own on a free loopback port (killed on drop), for figures that need a
//! quiet server (command counts, memory) and for the restart and eviction stress variants.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OwnRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    /// A config file to start from (Sentinels need one: they rewrite it).
    config: Option<PathBuf>,
}

pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl OwnRedis {
    pub fn start(extra: &[&str]) -> Result<OwnRedis, String> {
        Self::start_on(free_port()?, extra, None)
    }

    /// On `port`, from the config `config` (its text) when given.
    pub fn start_on(port: u16, extra: &[&str], config: Option<&str>) -> Result<OwnRedis, String> {
        let dir = std::env::temp_dir().join(format!("xtask-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = match config {
            Some(text) => {
                let path = dir.join("node.conf");
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        let mut r = OwnRedis { port, dir, child: None, extra: extra.iter().map(|s| s.to_string()).collect(), config };
        r.spawn()?;
        Ok(r)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        if let Some(config) = &self.config {
            cmd.arg(config);
        }
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server (is it installed?): {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).trim() == "PONG" {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("redis-server on port {} did not start", self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (SHUTDOWN: it writes its AOF if it has one), keeping the directory.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = self.cli(&["SHUTDOWN"]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL (nothing is saved), then starts it again on the same port and directory: it comes
    /// back with its last `SAVE` or AOF, or empty.
    pub fn crash_and_restart(&mut self) -> Result<(), String> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn()
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }

    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A field of `INFO <section>` (e.g. `used_memory`), from any ConnectionLike.
pub async fn info_field<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    section: &str,
    field: &str,
) -> Result<u64, String> {
    let info: String = redis::cmd("INFO").arg(section).query_async(conn).await.map_err(|e| e.to_string())?;
    info.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("INFO {section} has no {field}"))
}
