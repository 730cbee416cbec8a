//! [`DirectPool`]: a few plain connections for the hit check, used by the calling task itself.
//!
//! A command sent through redis-rs's multiplexed connection travels to a driver task and back
//! (a channel, a task switch, often a thread wake-up on each side) and its reply goes through a
//! general RESP parser. A hit is one `MGET` whose reply is an array of bulk strings, so the hit
//! check sends it on a connection of its own instead: the calling task writes the command and
//! reads the reply, parsed by the small parser below. When every direct connection is busy the
//! caller uses the multiplexed connection (which batches concurrent requests well); see
//! [`DirectPool::query`].
//!
//! A connection goes back to the pool only after a complete exchange: one whose future was
//! dropped mid-way, timed out or failed is closed, so a late reply can never be read as the
//! answer to another command.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::RedisBackendError;

/// A reply to a command sent on a direct connection (the RESP2 shapes this crate needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+…`
    Status(String),
    /// `:…`
    Int(i64),
    /// `$…` (`None`: the null bulk string)
    Bulk(Option<Vec<u8>>),
    /// `*…` of bulk strings (`None` elements: nulls)
    Array(Vec<Option<Vec<u8>>>),
}

/// A parse result: `Ok(None)` when more bytes are needed.
type Partial<T> = Result<Option<T>, RedisBackendError>;

/// Longest bulk string or array accepted from the server (Redis's own limit is 512 MB).
const MAX_LEN: usize = 512 * 1024 * 1024;

/// Parses one reply from the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// reply and the bytes it took. An error reply (`-…`) is [`RedisBackendError::Reply`]; anything
/// malformed, or a shape this parser does not handle, is [`RedisBackendError::Protocol`].
pub(crate) fn parse_reply(buf: &[u8]) -> Partial<(Reply, usize)> {
    let Some((kind, line, mut at)) = header(buf, 0)? else {
        return Ok(None);
    };
    let reply = match kind {
        b'+' => Reply::Status(text(line)?.to_owned()),
        b'-' => return Err(RedisBackendError::Reply(String::from_utf8_lossy(line).into_owned())),
        b':' => Reply::Int(int(line)?),
        b'$' => match bulk(buf, line, at)? {
            Some((value, next)) => {
                at = next;
                Reply::Bulk(value)
            }
            None => return Ok(None),
        },
        b'*' => {
            let n = int(line)?;
            if n < 0 {
                return Err(RedisBackendError::Protocol("null array".into()));
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > MAX_LEN {
                return Err(RedisBackendError::Protocol(format!("array of {n} elements")));
            }
            // Never reserve by a length the server announced before its elements arrived.
            let mut items = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let Some((kind, line, next)) = header(buf, at)? else {
                    return Ok(None);
                };
                match kind {
                    b'$' => match bulk(buf, line, next)? {
                        Some((value, next)) => {
                            items.push(value);
                            at = next;
                        }
                        None => return Ok(None),
                    },
                    b'-' => {
                        return Err(RedisBackendError::Reply(String::from_utf8_lossy(line).into_owned()));
                    }
                    other => {
                        return Err(RedisBackendError::Protocol(format!(
                            "array element of type {:?}",
                            char::from(other)
                        )));
                    }
                }
            }
            Reply::Array(items)
        }
        other => {
            return Err(RedisBackendError::Protocol(format!("reply of type {:?}", char::from(other))));
        }
    };
    Ok(Some((reply, at)))
}

/// The type byte and line (without CRLF) starting at `at`, and where the next part starts.
fn header(buf: &[u8], at: usize) -> Partial<(u8, &[u8], usize)> {
    let Some(rest) = buf.get(at..) else {
        return Ok(None);
    };
    let Some(&kind) = rest.first() else {
        return Ok(None);
    };
    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
        if rest.len() > 64 * 1024 {
            return Err(RedisBackendError::Protocol("reply line too long".into()));
        }
        return Ok(None);
    };
    Ok(Some((kind, &rest[1..end], at + end + 2)))
}

/// A bulk string whose length line is `line` and whose data starts at `at`.
fn bulk(buf: &[u8], line: &[u8], at: usize) -> Partial<(Option<Vec<u8>>, usize)> {
    let len = int(line)?;
    if len == -1 {
        return Ok(Some((None, at)));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_LEN)
        .ok_or_else(|| RedisBackendError::Protocol(format!("bulk length {len}")))?;
    let end = at + len;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(RedisBackendError::Protocol("bulk string not terminated by CRLF".into()));
    }
    Ok(Some((Some(buf[at..end].to_vec()), end + 2)))
}

fn text(line: &[u8]) -> Result<&str, RedisBackendError> {
    std::str::from_utf8(line).map_err(|_| RedisBackendError::Protocol("reply line is not UTF-8".into()))
}

fn int(line: &[u8]) -> Result<i64, RedisBackendError> {
    text(line)?
        .parse()
        .map_err(|_| RedisBackendError::Protocol(format!("not an integer: {:?}", String::from_utf8_lossy(line))))
}

/// Appends a command (a RESP array of bulk strings) to `out`.
pub(crate) fn encode_command<'a>(out: &mut Vec<u8>, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A TCP or unix-socket stream.
enum Stream {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// One plain connection: the stream and its buffers (reused between commands), and the
/// identity (`run_id`) of the server process it is connected to, read when it opened.
struct Conn {
    /// What it was opened for (a connection to a target no longer current is closed).
    target: Arc<DirectTarget>,
    stream: Stream,
    out: Vec<u8>,
    buf: Vec<u8>,
    server_id: Option<Arc<str>>,
}

/// The `run_id` line of an `INFO server` reply.
pub(crate) fn run_id_of(info: &[u8]) -> Option<Arc<str>> {
    let text = std::str::from_utf8(info).ok()?;
    let id = text.lines().find_map(|l| l.strip_prefix("run_id:"))?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Arc::from(id))
}

/// Read buffers larger than this are not kept between commands.
const KEEP_BUFFER: usize = 64 * 1024;

impl Conn {
    async fn write_all(&mut self) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let res = match &mut self.stream {
            Stream::Tcp(s) => s.write_all(&out).await,
            #[cfg(unix)]
            Stream::Unix(s) => s.write_all(&out).await,
        };
        self.out = out;
        res
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match &mut self.stream {
            Stream::Tcp(s) => read_buf(s, &mut self.buf).await,
            #[cfg(unix)]
            Stream::Unix(s) => read_buf(s, &mut self.buf).await,
        }
    }

    /// Sends the commands in `self.out` and reads `replies` replies.
    async fn exchange(&mut self, replies: usize) -> Result<Vec<Reply>, RedisBackendError> {
        self.buf.clear();
        self.write_all().await.map_err(io_err)?;
        let mut out = Vec::with_capacity(replies);
        let mut start = 0;
        while out.len() < replies {
            match parse_reply(&self.buf[start..])? {
                Some((reply, used)) => {
                    out.push(reply);
                    start += used;
                }
                None => {
                    if self.read_more().await.map_err(io_err)? == 0 {
                        return Err(io_err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
        if start != self.buf.len() {
            // Bytes nobody asked for: the connection is out of step.
            return Err(RedisBackendError::Protocol("unexpected bytes after the reply".into()));
        }
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        Ok(out)
    }
}

async fn read_buf<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    s.read_buf(buf).await
}

fn io_err(e: io::Error) -> RedisBackendError {
    RedisBackendError::Io(e)
}

/// Where and how direct connections connect: the address and the `AUTH` / `SELECT` to send.
#[derive(Clone)]
pub(crate) struct DirectTarget {
    addr: DirectAddr,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

#[derive(Clone)]
enum DirectAddr {
    Tcp(String, u16),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

impl DirectTarget {
    /// A TCP target (a cluster master), db 0.
    pub(crate) fn tcp(host: String, port: u16, username: Option<String>, password: Option<String>) -> DirectTarget {
        DirectTarget { addr: DirectAddr::Tcp(host, port), username, password, db: 0 }
    }

    /// The direct-connection form of a standalone target (`None` for a TLS one: hit checks over
    /// TLS go through the shared connection).
    pub(crate) fn of(info: &ConnectionInfo) -> Option<DirectTarget> {
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => DirectAddr::Tcp(host.clone(), *port),
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => DirectAddr::Unix(path.clone()),
            _ => return None,
        };
        let settings = info.redis_settings();
        Some(DirectTarget {
            addr,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            db: settings.db(),
        })
    }
}

/// A small pool of direct connections (see the module documentation).
pub(crate) struct DirectPool {
    /// `None`: no connection may be opened now (a Sentinel group whose master is not known).
    target: Mutex<Option<Arc<DirectTarget>>>,
    idle: Mutex<Vec<Conn>>,
    /// Connections open (idle or in use).
    open: AtomicUsize,
    max: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl std::fmt::Debug for DirectPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectPool").field("open", &self.open.load(Ordering::Relaxed)).field("max", &self.max).finish()
    }
}

/// One slot of the pool (a connection, or the right to open one). Dropping it without
/// [`Lease::give_back`] closes the connection and frees the slot.
pub(crate) struct Lease<'a> {
    pool: &'a DirectPool,
    conn: Option<Conn>,
    /// Whether the connection had been idle in the pool (the server may have closed it).
    reused: bool,
}

impl Lease<'_> {
    fn give_back(mut self) {
        if let Some(conn) = self.conn.take() {
            if !self.pool.is_current(&conn.target) {
                return;
            }
            self.pool.lock().push(conn);
            // The slot stays counted: idle connections are open.
            std::mem::forget(self);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl DirectPool {
    pub(crate) fn new(
        target: Option<DirectTarget>,
        max: usize,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        DirectPool {
            target: Mutex::new(target.map(Arc::new)),
            idle: Mutex::new(Vec::with_capacity(max)),
            open: AtomicUsize::new(0),
            max,
            connect_timeout,
            response_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<DirectTarget>> {
        self.target.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn is_current(&self, target: &Arc<DirectTarget>) -> bool {
        self.current().is_some_and(|t| Arc::ptr_eq(&t, target))
    }

    /// Connects to `target` from now on (`None`: not at all): idle connections are closed, and
    /// those in use are closed when their command is done.
    pub(crate) fn retarget(&self, target: Option<DirectTarget>) {
        *self.target.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = target.map(Arc::new);
        self.close_idle();
    }

    fn close_idle(&self) {
        let stale = std::mem::take(&mut *self.lock());
        self.open.fetch_sub(stale.len(), Ordering::AcqRel);
        drop(stale);
    }

    /// Sends one command on `lease` (from [`DirectPool::take`]) and returns its reply, and the
    /// identity of the server that answered (`None` when it could not be read).
    ///
    /// When a connection that had been idle in the pool fails with an I/O error (the server
    /// closed it: a restart, an idle timeout, `CLIENT KILL`), the other idle connections are
    /// closed too and the command is sent once more on a new connection. Use this only for
    /// commands that may run twice (reads).
    pub(crate) async fn query<'a>(
        &self,
        lease: Lease<'_>,
        args: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
    ) -> Result<(Reply, Option<Arc<str>>), RedisBackendError> {
        let reused = lease.reused;
        match self.query_on(lease, args.clone()).await {
            Err(RedisBackendError::Io(e)) if reused && e.kind() != io::ErrorKind::TimedOut => {
                self.close_idle();
                match self.reserve() {
                    Some(lease) => self.query_on(lease, args).await,
                    None => Err(RedisBackendError::Io(e)),
                }
            }
            res => res,
        }
    }

    /// A connection: an idle one, or a slot for a new one; `None` when all are in use (the
    /// caller sends its command another way).
    pub(crate) fn take(&self) -> Option<Lease<'_>> {
        self.current()?;
        if let Some(conn) = self.lock().pop() {
            return Some(Lease { pool: self, conn: Some(conn), reused: true });
        }
        self.reserve()
    }

    /// A slot for a new connection, if the pool is not full.
    fn reserve(&self) -> Option<Lease<'_>> {
        let mut open = self.open.load(Ordering::Acquire);
        loop {
            if open >= self.max {
                return None;
            }
            match self.open.compare_exchange_weak(open, open + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Lease { pool: self, conn: None, reused: false }),
                Err(now) => open = now,
            }
        }
    }

    /// Runs one command on `lease`, connecting first when it holds no connection. The
    /// connection goes back to the pool only after a complete exchange.
    async fn query_on<'a>(
        &self,
        mut lease: Lease<'_>,
        args: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<(Reply, Option<Arc<str>>), RedisBackendError> {
        let conn = match &mut lease.conn {
            Some(conn) => conn,
            empty => empty.insert(self.connect().await?),
        };
        conn.out.clear();
        encode_command(&mut conn.out, args);
        let reply = tokio::time::timeout(self.response_timeout, conn.exchange(1))
            .await
            .map_err(|_| RedisBackendError::Io(io::ErrorKind::TimedOut.into()))??
            .pop()
            .ok_or_else(|| RedisBackendError::Protocol("no reply".into()))?;
        let server_id = conn.server_id.clone();
        lease.give_back();
        Ok((reply, server_id))
    }

    /// Opens a connection and authenticates / selects the database.
    async fn connect(&self) -> Result<Conn, RedisBackendError> {
        let t = self.current().ok_or_else(|| {
            RedisBackendError::Io(io::Error::new(io::ErrorKind::NotConnected, "no server to connect to"))
        })?;
        let connect = async {
            let stream = match &t.addr {
                DirectAddr::Tcp(host, port) => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    Stream::Tcp(s)
                }
                #[cfg(unix)]
                DirectAddr::Unix(path) => Stream::Unix(tokio::net::UnixStream::connect(path).await?),
            };
            Ok::<_, io::Error>(stream)
        };
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| RedisBackendError::Io(io::ErrorKind::TimedOut.into()))?
            .map_err(io_err)?;
        let mut conn = Conn {
            target: t.clone(),
            stream,
            out: Vec::with_capacity(256),
            buf: Vec::with_capacity(4096),
            server_id: None,
        };
        let mut setup = 0;
        if let Some(password) = &t.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &t.username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            encode_command(&mut conn.out, args.into_iter());
            setup += 1;
        }
        let db = t.db.to_string();
        if t.db != 0 {
            encode_command(&mut conn.out, [b"SELECT".as_slice(), db.as_bytes()].into_iter());
            setup += 1;
        }
        // Last: which server process this connection talks to (a hit must come from the one
        // its namespace was verified on).
        encode_command(&mut conn.out, [b"INFO".as_slice(), b"server"].into_iter());
        let mut replies = tokio::time::timeout(self.response_timeout, conn.exchange(setup + 1))
            .await
            .map_err(|_| RedisBackendError::Io(io::ErrorKind::TimedOut.into()))??;
        if let Some(Reply::Bulk(Some(info))) = replies.pop() {
            conn.server_id = run_id_of(&info);
        }
        if let Some(bad) = replies.iter().find(|r| **r != Reply::Status("OK".into())) {
            return Err(RedisBackendError::Protocol(format!("connection setup answered {bad:?}")));
        }
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Partial<(Reply, usize)> {
        parse_reply(bytes)
    }

    #[test]
    fn replies() {
        let ok = |b: &[u8]| parse(b).unwrap().unwrap();
        assert_eq!(ok(b"+OK\r\n"), (Reply::Status("OK".into()), 5));
        assert_eq!(ok(b":-12\r\n"), (Reply::Int(-12), 6));
        assert_eq!(ok(b"$-1\r\n"), (Reply::Bulk(None), 5));
        assert_eq!(ok(b"$0\r\n\r\n"), (Reply::Bulk(Some(vec![])), 6));
        assert_eq!(ok(b"$3\r\na\r\n\r\n+X"), (Reply::Bulk(Some(b"a\r\n".to_vec())), 9));
        assert_eq!(
            ok(b"*3\r\n$1\r\nx\r\n$-1\r\n$2\r\nyz\r\n"),
            (Reply::Array(vec![Some(b"x".to_vec()), None, Some(b"yz".to_vec())]), 24)
        );
        assert_eq!(ok(b"*0\r\n"), (Reply::Array(vec![]), 4));
        match parse(b"-NOAUTH Authentication required.\r\n") {
            Err(RedisBackendError::Reply(m)) => assert_eq!(m, "NOAUTH Authentication required."),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_truncation_needs_more_bytes() {
        let full = b"*3\r\n$5\r\nhello\r\n$-1\r\n$12\r\nhello\r\nworld\r\n";
        assert!(matches!(parse(full), Ok(Some((_, n))) if n == full.len()));
        for cut in 0..full.len() {
            assert!(matches!(parse(&full[..cut]), Ok(None)), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"?x\r\n"[..],
            b"$abc\r\n",
            b"$-2\r\n",
            b"$3\r\nabcde\r\n",
            b"*-1\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n-ERR x\r\n",
            b":\r\n",
            b"+\xff\r\n",
            b"$99999999999999999999\r\n",
            b"*99999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?} parsed", String::from_utf8_lossy(bad));
        }
        // Random bytes never panic.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(b"*$:+-\r\n0123-x"[(x % 13) as usize]);
            }
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn commands_are_resp_arrays() {
        let mut out = Vec::new();
        encode_command(&mut out, [b"MGET".as_slice(), b"a", b""].into_iter());
        assert_eq!(out, b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$0\r\n\r\n");
    }
}
