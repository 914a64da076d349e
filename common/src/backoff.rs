//! The one retry delay of the workspace: capped exponential backoff with jitter.
//!
//! Each delay is drawn between half of the current ceiling and the ceiling ("equal jitter"), then the ceiling
//! doubles up to its cap. The jitter keeps processes that failed together (a database restart seen by every
//! consumer) from retrying in lockstep; the lower half keeps the delay growing.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Delays between retries of one operation. [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first ceiling (after a reset).
    initial: Duration,
    /// The ceiling never grows past this.
    max: Duration,
    /// The ceiling of the next delay.
    ceiling: Duration,
    /// Retries since the last reset.
    attempts: u32,
}

impl Backoff {
    /// Delays starting at up to `initial`, growing to at most `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, ceiling: initial, attempts: 0 }
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        self.attempts += 1;
        let half = ceiling / 2;
        half + half.mul_f64(random_fraction())
    }

    /// Retries since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
        self.attempts = 0;
    }
}

/// A fraction in [0, 1) from the standard library's randomly keyed hasher (no generator crate needed for jitter).
fn random_fraction() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    (hasher.finish() >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let ceilings = [100, 200, 400, 700, 700];
        for ceiling in ceilings {
            let d = b.next_delay();
            let c = Duration::from_millis(ceiling);
            assert!(d >= c / 2 && d <= c, "{d:?} not within [{:?}, {c:?}]", c / 2);
        }
        assert_eq!(b.attempts(), 5);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        assert_eq!(b.attempts(), 1);
    }

    #[test]
    fn jitter_varies() {
        let mut delays: Vec<Duration> =
            (0..20).map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay()).collect();
        delays.dedup();
        assert!(delays.len() > 1, "{delays:?}");
    }
}
