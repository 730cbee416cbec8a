//! `no_invalidation`: a task-local scope in which invalidations are skipped.

use std::future::Future;

tokio::task_local! {
    static NO_INVALIDATION: ();
}

/// Runs `fut` with invalidation suppressed for everything it does, across `.await` points
/// (the flag is task-local, not thread-local). Write leases are not taken either, so other
/// readers may keep hitting values the writes make stale until you invalidate explicitly
/// (`invalidate_model`, `invalidate_all`) afterwards — exactly as in the original.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let inside = cacheops::no_invalidation(async { cacheops::invalidation_suppressed() }).await;
/// assert!(inside);
/// assert!(!cacheops::invalidation_suppressed());
/// # });
/// ```
pub async fn no_invalidation<F: Future>(fut: F) -> F::Output {
    NO_INVALIDATION.scope((), fut).await
}

/// Whether the current task is inside [`no_invalidation`].
pub fn invalidation_suppressed() -> bool {
    NO_INVALIDATION.try_with(|_| ()).is_ok()
}
