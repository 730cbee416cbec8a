//! Write leases: markers from before a write is visible until after it commits, what happens
//! when a marker cannot be placed, and what a dropped (cancelled) write leaves behind.

use std::sync::atomic::Ordering;
use std::time::Instant;

use cacheops_core::protocol::WriteRequest;

use crate::cache::{Cache, TableChange};
use crate::error::Error;
use crate::health::Pending;
use crate::scope::invalidation_suppressed;

/// What a write does when its lease cannot be placed: Redis unreachable, its breaker open,
/// refusing writes (`READONLY` replica, `CLIENT PAUSE WRITE` outlasting the response timeout) —
/// anything but success of the mark. Set with [`crate::CacheBuilder::on_mark_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MarkFailure {
    /// The default: [`WriteLease::mark`] and [`WriteLease::before_commit`] fail with
    /// [`Error::LeaseUnavailable`], so the integration rolls the write back. No process can then
    /// hit a value the write would have changed. Writes fail while the cache backend is down.
    #[default]
    RefuseWrite,
    /// The write goes on unmarked; its invalidation is queued and replayed (eagerly, in the
    /// background) once the backend answers, and this process serves no hit meanwhile. **Other
    /// processes** that still reach the backend (a partition of this process only, or a backend
    /// that refuses this process's writes but serves reads) may hit values the write changed
    /// until the replay lands. For availability over freshness.
    Proceed,
}

impl Cache {
    /// Starts a write lease. Mark what the write changes with [`WriteLease::mark`] before the
    /// change becomes visible (before it executes, or before COMMIT), call
    /// [`WriteLease::before_commit`] right before COMMIT, and [`WriteLease::finish`] after
    /// COMMIT or ROLLBACK.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cacheops::{Cache, Row, TableChange, Value};
    /// let cache = Cache::builder().build().await.unwrap();
    /// let row: Row = [("id".to_owned(), Value::Int(1))].into();
    /// let mut lease = cache.write_lease();
    /// lease.mark(TableChange::rows("post", [row])).await.unwrap(); // before the write is visible
    /// // … UPDATE … ; lease.before_commit().await? ; COMMIT …
    /// lease.finish().await.unwrap(); // after COMMIT or ROLLBACK
    /// # });
    /// ```
    pub fn write_lease(&self) -> WriteLease {
        WriteLease {
            cache: self.clone(),
            writer: format!("w{:016x}", rand::random::<u64>()),
            changes: Vec::new(),
            marked_at: None,
            unmarked: false,
            finished: false,
            suppressed: invalidation_suppressed() || !self.inner.enabled,
        }
    }
}

/// A write in flight.
///
/// **Dropped without [`WriteLease::finish`]** (its future cancelled, e.g. by a request timeout
/// while COMMIT is in flight), it does not finish: its COMMIT may still land, so its markers
/// stay until the lease expires and readers of those rows go to the database meanwhile. A lease
/// that could not be placed ([`MarkFailure::Proceed`]) queues its invalidation for replay.
#[derive(Debug)]
#[must_use = "a write lease must be finished after commit or rollback"]
pub struct WriteLease {
    cache: Cache,
    writer: String,
    changes: Vec<TableChange>,
    marked_at: Option<Instant>,
    unmarked: bool,
    finished: bool,
    suppressed: bool,
}

impl WriteLease {
    /// The writer id.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// Marks what the write changes (adds to what is already marked).
    pub async fn mark(&mut self, change: TableChange) -> Result<(), Error> {
        self.mark_many(vec![change]).await
    }

    /// Marks several changes in one backend call (adds to what is already marked).
    pub async fn mark_many(&mut self, changes: Vec<TableChange>) -> Result<(), Error> {
        if self.suppressed || changes.is_empty() {
            return Ok(());
        }
        let req = self.cache.write_request(Some(self.writer.clone()), &changes);
        self.changes.extend(changes);
        self.send_mark(req).await
    }

    async fn send_mark(&mut self, req: WriteRequest) -> Result<(), Error> {
        let inner = &self.cache.inner;
        // The server starts the lease when it receives the mark: take the time before sending,
        // so that the lease is never believed to last longer than it does.
        let sent_at = Instant::now();
        // The gate applies the breaker and counts and logs a failure; its degrade answer does
        // not apply to marks (the policy below does).
        let mark = async {
            match inner.backend.mark(&req).await {
                // The connection had been dropped (a server restart): the client reconnects on
                // the next command, and a mark may be sent twice.
                Err(e) if e.is_connection_dropped() => inner.backend.mark(&req).await,
                res => res,
            }
        };
        match self.cache.gate(mark).await {
            Ok(()) => {
                if self.marked_at.is_none() {
                    self.marked_at = Some(sent_at);
                }
                Ok(())
            }
            Err(e) => match inner.mark_failure {
                MarkFailure::RefuseWrite => Err(Error::LeaseUnavailable(e)),
                MarkFailure::Proceed => {
                    if !self.unmarked {
                        self.unmarked = true;
                        inner.unmarked.fetch_add(1, Ordering::AcqRel);
                    }
                    if inner.degrade { Ok(()) } else { Err(Error::LeaseUnavailable(e)) }
                }
            },
        }
    }

    /// Renews the lease (marks again, against the schemes registered now) when more than two
    /// thirds of it have passed, when an earlier mark failed, or always on a backend that may
    /// lose marks (Redis: a restart between the mark and the COMMIT would otherwise leave the
    /// commit unprotected). Call right before COMMIT: then the markers cover the commit.
    pub async fn before_commit(&mut self) -> Result<(), Error> {
        if self.suppressed || self.changes.is_empty() {
            return Ok(());
        }
        let lease = self.cache.inner.lease;
        let due = self.cache.inner.backend.may_lose_marks()
            || self.marked_at.is_none_or(|t| t.elapsed().saturating_mul(3) >= lease.saturating_mul(2));
        if due {
            self.marked_at = None;
            let req = self.cache.write_request(Some(self.writer.clone()), &self.changes);
            self.send_mark(req).await?;
        }
        Ok(())
    }

    /// Ends the write (after COMMIT or ROLLBACK): deletes the affected stamps and markers.
    pub async fn finish(mut self) -> Result<(), Error> {
        self.finish_inner().await
    }

    async fn finish_inner(&mut self) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if self.suppressed || self.changes.is_empty() {
            return Ok(());
        }
        let req = self.cache.write_request(Some(self.writer.clone()), &self.changes);
        let res = self.cache.deliver(Pending::Finish(req)).await;
        self.cache.emit_changes(&self.changes);
        if self.unmarked {
            self.unmarked = false;
            self.cache.inner.unmarked.fetch_sub(1, Ordering::AcqRel);
        }
        res
    }
}

impl Drop for WriteLease {
    fn drop(&mut self) {
        if self.finished || self.suppressed || self.changes.is_empty() {
            return;
        }
        self.finished = true;
        // Marked: leave the markers. The write's COMMIT may still be in flight; finishing now
        // would let a reader store the old rows under fresh stamps before it lands. The markers'
        // entries expire with the lease, which ends the write as a finish would (a marker
        // whose entries all expired is no stamp: every value under the old stamps is dead).
        if self.unmarked {
            // Nothing protects the rows: replay the invalidation as soon as the backend answers.
            let req = self.cache.write_request(Some(self.writer.clone()), &self.changes);
            self.cache.inner.health.queue(Pending::Finish(req));
            self.cache.inner.unmarked.fetch_sub(1, Ordering::AcqRel);
            self.cache.replay_soon();
        }
    }
}
