//! A session's request budget: a token bucket, so a flood of requests cannot starve the others.

/// A token bucket: `rate` tokens a second, at most `burst` saved up. Refused requests in a row
/// are counted, so a client that ignores `rate_limited` can be closed.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: std::time::Instant,
    pub refused_in_a_row: u32,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: std::time::Instant::now(),
            refused_in_a_row: 0,
        }
    }

    /// Take a token if there is one.
    pub fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }
}
