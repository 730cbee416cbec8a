//! Durations from configuration, saturated: `Duration::MAX` means "forever" and never overflows.

use std::time::{Duration, Instant};

/// The longest time cacheops keeps or waits for anything (100 years); longer durations, such as
/// `Duration::MAX` for "forever", are capped to it.
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `d`, at most [`FOREVER`].
pub fn cap(d: Duration) -> Duration {
    d.min(FOREVER)
}

/// `now + d`, with `d` capped to [`FOREVER`] (and, should even that overflow the platform's
/// clock, the latest representable instant this side of it).
///
/// ```
/// use std::time::{Duration, Instant};
/// let now = Instant::now();
/// assert!(cacheops_core::time::deadline(now, Duration::MAX) > now + Duration::from_secs(3600));
/// ```
pub fn deadline(now: Instant, d: Duration) -> Instant {
    let d = cap(d);
    now.checked_add(d)
        .or_else(|| now.checked_add(d / 2))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        assert_eq!(deadline(now, Duration::MAX), now + FOREVER);
        assert_eq!(cap(Duration::MAX), FOREVER);
    }
}
