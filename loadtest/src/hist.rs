//! A mergeable latency histogram: exact below 128 µs, then 64 buckets per power of two (under
//! 1.6% error), so workers can send theirs to the parent process and a million samples cost a
//! few kilobytes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    /// Bucket index → count.
    counts: BTreeMap<u32, u64>,
    n: u64,
    /// The largest value recorded, exactly (µs).
    max: u64,
}

fn index(v: u64) -> u32 {
    if v < 128 {
        return v as u32;
    }
    let shift = 63 - v.leading_zeros() - 6;
    shift * 64 + (v >> shift) as u32
}

/// The middle of a bucket, in µs.
fn value(i: u32) -> u64 {
    if i < 128 {
        return i as u64;
    }
    let shift = i / 64 - 1;
    let m = (i - shift * 64) as u64;
    (m << shift) + (1 << shift) / 2
}

impl Hist {
    pub fn record(&mut self, micros: u64) {
        *self.counts.entry(index(micros)).or_insert(0) += 1;
        self.n += 1;
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (i, c) in &other.counts {
            *self.counts.entry(*i).or_insert(0) += c;
        }
        self.n += other.n;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        if q >= 1.0 {
            return self.max as f64 / 1000.0;
        }
        // The rank of the sample, as in "nearest rank" on the sorted samples.
        let rank = ((self.n - 1) as f64 * q).round() as u64;
        let mut seen = 0;
        for (i, c) in &self.counts {
            seen += c;
            if seen > rank {
                return value(*i).min(self.max) as f64 / 1000.0;
            }
        }
        self.max as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in 0..1_000_000u64 {
            let i = index(v);
            assert!(i == last || i == last + 1, "gap at {v}: {last} -> {i}");
            last = i;
            let mid = value(i) as f64;
            assert!(
                (mid - v as f64).abs() <= (v as f64 * 0.016).max(0.5),
                "{v} -> {mid}"
            );
        }
    }

    #[test]
    fn quantiles_and_merge() {
        let mut a = Hist::default();
        let mut b = Hist::default();
        for v in 1..=500u64 {
            a.record(v * 1000);
        }
        for v in 501..=1000u64 {
            b.record(v * 1000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        assert!(
            (a.quantile_ms(0.5) - 500.0).abs() < 8.0,
            "{}",
            a.quantile_ms(0.5)
        );
        assert!((a.quantile_ms(0.99) - 990.0).abs() < 16.0);
        assert_eq!(a.quantile_ms(1.0), 1000.0);
        assert_eq!(Hist::default().quantile_ms(0.5), 0.0);
        let json = serde_json::to_string(&a).expect("serialise");
        let back: Hist = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, a);
    }
}
