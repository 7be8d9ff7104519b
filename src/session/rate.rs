//! A session's request budget: a token bucket, so a flood of requests cannot starve the others;
//! and the count of refusals that tells a client ignoring `rate_limited` from one that touched
//! the limit.

use std::time::{Duration, Instant};

/// The window refusals are counted in: a client refused more than `burst` times within it keeps
/// sending regardless of `rate_limited`, and is closed (4002).
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// A token bucket: `rate` tokens a second, at most `burst` saved up; refusals counted per
/// [`FLOOD_WINDOW`]. (Counting refusals *in a row* let a flood go on for ever: every refilled
/// token granted one request and started the count again.)
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// When the current refusal window began, and the refusals in it.
    window: Instant,
    refused: u32,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket::new_at(rate, burst, Instant::now())
    }

    fn new_at(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
            window: now,
            refused: 0,
        }
    }

    /// Take a token if there is one.
    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        if now.saturating_duration_since(self.window) >= FLOOD_WINDOW {
            self.window = now;
            self.refused = 0;
        }
        self.refused += 1;
        false
    }

    /// Whether the client has been refused more than `max` times within the window: it ignores
    /// `rate_limited`.
    pub fn flooding(&self, max: u32) -> bool {
        self.refused > max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client sending 1,000 requests a second against 50/s and bursts of 100 is refused ~950
    /// times a second, with a request granted every 20 ms: it floods within the window although
    /// it is never refused 100 times in a row.
    #[test]
    fn a_flood_is_seen_although_refills_interrupt_it() {
        let start = Instant::now();
        let mut b = TokenBucket::new_at(50, 100, start);
        let mut granted = 0;
        let mut flooded_at = None;
        for i in 0..3_000u64 {
            let now = start + Duration::from_millis(i);
            if b.take_at(now) {
                granted += 1;
            } else if flooded_at.is_none() && b.flooding(1_000) {
                flooded_at = Some(i);
            }
        }
        assert!(granted > 100, "refills keep granting: {granted}");
        let at = flooded_at.expect("a flood");
        assert!(
            (1_000..1_300).contains(&at),
            "seen after ~1,000 refusals, at {at} ms"
        );
    }

    /// A client that touches the limit now and then is never taken for a flood: the count starts
    /// again with every window.
    #[test]
    fn refusals_spread_over_windows_are_no_flood() {
        let start = Instant::now();
        let mut b = TokenBucket::new_at(1, 1, start);
        for w in 0..5u64 {
            for i in 0..50u64 {
                let now = start + FLOOD_WINDOW * w as u32 + Duration::from_millis(i);
                b.take_at(now);
            }
            assert!(!b.flooding(60), "window {w}");
        }
    }
}
