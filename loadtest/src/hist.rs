//! A mergeable latency histogram: exact below 128 µs, then 64 buckets per power of two (under
//! 1.6% error), so workers can send theirs to the parent process and a million samples cost a
//! few kilobytes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Recording is an index into a dense array (a receiver records every delivery: it must cost
/// next to nothing); the wire form between processes is sparse (bucket → count).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Sparse", into = "Sparse")]
pub struct Hist {
    /// Count per bucket index, as long as the highest bucket used.
    counts: Vec<u64>,
    n: u64,
    /// The largest value recorded, exactly (µs).
    max: u64,
}

#[derive(Serialize, Deserialize)]
struct Sparse {
    counts: BTreeMap<u32, u64>,
    n: u64,
    max: u64,
}

impl From<Sparse> for Hist {
    fn from(s: Sparse) -> Hist {
        let mut counts = vec![0; s.counts.keys().next_back().map_or(0, |i| *i as usize + 1)];
        for (i, c) in s.counts {
            counts[i as usize] = c;
        }
        Hist {
            counts,
            n: s.n,
            max: s.max,
        }
    }
}

impl From<Hist> for Sparse {
    fn from(h: Hist) -> Sparse {
        Sparse {
            counts: h
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i as u32, *c))
                .collect(),
            n: h.n,
            max: h.max,
        }
    }
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
        let i = index(micros) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.n += 1;
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Hist) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
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
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return value(i as u32).min(self.max) as f64 / 1000.0;
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
