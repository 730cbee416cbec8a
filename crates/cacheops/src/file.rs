//! The file cache: the simple cache's API over a directory, safe across processes.
//!
//! Each entry is one file, `<dir>/<h[38..]>/<h[..38]>` with `h` the SHA-1 of the key. A file is
//! `COF1` + expiry (milliseconds since the Unix epoch, little-endian `u64`, 0 = never) + data.
//! Writes go to a temporary file in the same directory, then `rename` over the entry: readers
//! (in any process) see the old file or the new one, never a part of one; concurrent writers
//! each install a whole file, the last rename wins. Expired entries read as misses;
//! [`cleanfilecache`] removes them (run it from cron, or use the CLI's `cleanfilecache`).

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::simple::{Cached, SimpleStore};

const MAGIC: &[u8; 4] = b"COF1";
const HEADER: usize = 12;
const TMP_PREFIX: &str = ".tmp-";

/// A simple cache in a directory.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cacheops::{FileCache, SimpleStore};
/// let dir = std::env::temp_dir().join(format!("cacheops-doc-{}", std::process::id()));
/// let files = FileCache::new(&dir);
/// files.set("k", &vec![1u8, 2, 3], None).await.unwrap();
/// assert_eq!(files.get::<Vec<u8>>("k").await.unwrap(), vec![1, 2, 3]);
/// assert!(files.delete("k").await.unwrap());            // really deletes (the original's did not)
/// assert!(files.get::<Vec<u8>>("k").await.unwrap_err().is_cache_miss());
/// # std::fs::remove_dir_all(&dir).ok();
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FileCache {
    dir: Arc<PathBuf>,
    enabled: bool,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

impl FileCache {
    /// A file cache in `dir` (created on first write).
    pub fn new(dir: impl AsRef<Path>) -> FileCache {
        FileCache { dir: Arc::new(dir.as_ref().to_path_buf()), enabled: true }
    }

    /// `false`: a pass-through that never touches the directory.
    #[must_use]
    pub fn enabled(mut self, on: bool) -> FileCache {
        self.enabled = on;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A function cached in this directory for a time.
    pub fn cached(&self, name: impl Into<String>) -> Cached {
        crate::simple::cached_on(crate::simple::SimpleTarget::File(self.clone()), name.into())
    }

    fn path(&self, key: &str) -> PathBuf {
        let h = sha1_smol::Sha1::from(key.as_bytes()).digest().to_string();
        self.dir.join(&h[38..]).join(&h[..38])
    }
}

impl crate::cache::Cache {
    /// A file cache in `dir` that is a pass-through when this cache is disabled.
    pub fn file_cache(&self, dir: impl AsRef<Path>) -> FileCache {
        FileCache::new(dir).enabled(self.is_enabled())
    }
}

fn read_entry(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(header) = bytes.get(..HEADER) else { return Ok(None) };
    if &header[..4] != MAGIC {
        return Ok(None);
    }
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&header[4..HEADER]);
    let expires = u64::from_le_bytes(exp);
    if expires != 0 && expires <= now_ms() {
        return Ok(None);
    }
    Ok(Some(bytes[HEADER..].to_vec()))
}

fn write_entry(path: &Path, data: &[u8], ttl: Option<Duration>) -> std::io::Result<()> {
    let Some(parent) = path.parent() else { return Err(std::io::Error::other("entry path without a parent")) };
    let expires = ttl.map_or(0, |t| now_ms().saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)).max(1));
    let tmp = parent.join(format!("{TMP_PREFIX}{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let write = |tmp: &Path| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(tmp)?;
        let mut buf = Vec::with_capacity(HEADER + data.len());
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&expires.to_le_bytes());
        buf.extend_from_slice(data);
        f.write_all(&buf)?;
        std::fs::rename(tmp, path)
    };
    let mut res = write(&tmp);
    if matches!(&res, Err(e) if e.kind() == ErrorKind::NotFound) {
        std::fs::create_dir_all(parent)?;
        res = write(&tmp);
    }
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, Error> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Error::Io),
        Err(e) => Err(Error::Io(std::io::Error::other(e.to_string()))),
    }
}

impl SimpleStore for FileCache {
    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        if !self.enabled {
            return Ok(None);
        }
        let path = self.path(key);
        blocking(move || read_entry(&path)).await
    }
    async fn set_raw(&self, key: &str, data: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let path = self.path(key);
        let data = data.to_vec();
        blocking(move || write_entry(&path, &data, ttl)).await
    }
    async fn delete_raw(&self, key: &str) -> Result<bool, Error> {
        if !self.enabled {
            return Ok(false);
        }
        let path = self.path(key);
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }
    fn is_enabled(&self) -> bool {
        self.enabled
    }
}

/// Removes expired entries (and temporary files abandoned for over an hour) under `dir`.
/// Returns how many files were removed. Safe to run while processes use the cache: an entry
/// rewritten meanwhile is at worst removed, which is a miss.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("cacheops-clean-doc-{}", std::process::id()));
/// assert_eq!(cacheops::cleanfilecache(&dir).unwrap(), 0); // a missing directory is empty
/// ```
pub fn cleanfilecache(dir: impl AsRef<Path>) -> std::io::Result<usize> {
    let dir = dir.as_ref();
    let subdirs = match std::fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = now_ms();
    let mut removed = 0;
    for sub in subdirs.flatten() {
        if !sub.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(sub.path()) else { continue };
        for f in files.flatten() {
            let path = f.path();
            let name = f.file_name();
            let expired = if name.to_string_lossy().starts_with(TMP_PREFIX) {
                f.metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(3600))
            } else {
                header_expired(&path, now)
            };
            if expired && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn header_expired(path: &Path, now: u64) -> bool {
    use std::io::Read;
    let mut header = [0u8; HEADER];
    let ok = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok();
    if !ok || &header[..4] != MAGIC {
        return false;
    }
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&header[4..]);
    let expires = u64::from_le_bytes(exp);
    expires != 0 && expires <= now
}
