//! `--ramp START,FACTOR,STEP_SECS,P99_MS[,MAX_RATE]`: the highest rate a server holds. Steps of the
//! scenario at START messages per second per publisher, multiplied by FACTOR each step, each
//! STEP_SECS long (a fresh set-up each: every step is a clean run of its own), until one fails —
//! p99 above P99_MS, or anything lost, duplicated, reordered or dropped — then two bisection
//! steps between the last that held and the first that did not. The answer is the highest step
//! that held, in deliveries per second.
//!
//! Every step reports the client's own CPU beside the server's (a saturated client measures
//! itself) and, against crossroom, the server's commit latency over the step (from its
//! `/metrics`) beside the delivery latency: whether the tail came from the disk.

use crate::peer::Target;
use crate::run::{self, Args, Outcome};
use crossroom_protocol::client::Http;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    pub start: f64,
    pub factor: f64,
    pub step: Duration,
    pub p99_ms: f64,
    /// No step goes past this rate per publisher.
    pub max_rate: f64,
}

/// Bisection steps after the first failing one.
const BISECTIONS: u32 = 2;
/// No ramp goes past this rate per publisher unless told (a safety stop).
const MAX_RATE: f64 = 1.0e6;

impl Ramp {
    /// `25,1.6,3,50`.
    pub fn parse(s: &str) -> Result<Ramp, String> {
        let v: Vec<f64> = s
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| "--ramp START,FACTOR,STEP_SECS,P99_MS[,MAX_RATE]: numbers".to_owned())?;
        let (max_rate, v) = match v[..] {
            [a, b, c, d, m] => (m, [a, b, c, d]),
            [a, b, c, d] => (MAX_RATE, [a, b, c, d]),
            _ => {
                return Err(
                    "--ramp START,FACTOR,STEP_SECS,P99_MS[,MAX_RATE]: four or five numbers".into(),
                )
            }
        };
        match v {
            [start, factor, step, p99_ms]
                if start > 0.0
                    && factor > 1.0
                    && step >= 1.0
                    && p99_ms > 0.0
                    && max_rate >= start =>
            {
                Ok(Ramp {
                    start,
                    factor,
                    step: Duration::from_secs_f64(step),
                    p99_ms,
                    max_rate,
                })
            }
            _ => Err(
                "--ramp: START > 0, FACTOR > 1, STEP_SECS ≥ 1, P99_MS > 0, MAX_RATE ≥ START".into(),
            ),
        }
    }

    /// The rate of the next step, given what held so far (`lo`), what failed first (`hi`) and
    /// how many bisections were done; `None` when the ramp is over.
    pub fn next(&self, rate: f64, lo: Option<f64>, hi: Option<f64>, bisected: u32) -> Option<f64> {
        match hi {
            None => Some(rate * self.factor).filter(|r| *r <= self.max_rate),
            Some(_) if bisected >= BISECTIONS => None,
            Some(h) => {
                let l = lo.unwrap_or(0.0);
                Some((l + h) / 2.0).filter(|r| *r >= 0.1 && h - l > 0.01 * h)
            }
        }
    }
}

/// One step: the scenario's outcome, whether it held, and the server's commit latency.
struct Step {
    rate: f64,
    outcome: Outcome,
    held: bool,
    commit_p99_ms: Option<f64>,
}

fn figure(o: &Outcome, name: &str) -> f64 {
    o.figures
        .iter()
        .find(|(k, _)| *k == name)
        .map(|f| f.1)
        .unwrap_or(f64::NAN)
}

/// Cumulative counts of `crossroom_commit_latency_seconds` by upper bound (seconds).
async fn commit_buckets(a: &Args) -> Option<Vec<(f64, f64)>> {
    if a.endpoint.target != Target::Crossroom {
        return None;
    }
    let r = Http::new(a.nodes[0].clone(), None)
        .get("/metrics")
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&r.bytes).into_owned();
    Some(parse_buckets(
        &text,
        "crossroom_commit_latency_seconds_bucket",
    ))
}

pub fn parse_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|x, y| x.0.total_cmp(&y.0));
    out
}

/// The 99th percentile (ms, a bucket's upper bound) of what was observed between two readings.
pub fn p99_between(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|x| x.1)
                .unwrap_or(0.0);
            (*le, c - b)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, c)| *c >= 0.99 * total)
        .map(|(le, _)| le * 1000.0)
}

async fn step(a: &Args, r: &Ramp, rate: f64) -> Result<Step, String> {
    let mut s = a.clone();
    s.rate = rate;
    s.duration = r.step;
    s.runs = 1;
    let before = commit_buckets(a).await;
    let outcome = run::run_once(&s).await?;
    let after = commit_buckets(a).await;
    let commit_p99_ms = match (before, after) {
        (Some(b), Some(e)) => p99_between(&b, &e),
        _ => None,
    };
    let p99 = figure(&outcome, "p99_ms");
    let held = outcome.clean && p99 <= r.p99_ms;
    Ok(Step {
        rate,
        outcome,
        held,
        commit_p99_ms,
    })
}

fn table(steps: &[Step]) -> String {
    let mut out = String::from(
        "| step | msg/s per publisher | deliveries/s | p50 ms | p99 ms | max ms | commit p99 ms | lost | server CPU s | client CPU s | held |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let f = |v: f64| {
        if v.is_finite() {
            format!("{v:.2}")
        } else {
            "—".into()
        }
    };
    for (i, s) in steps.iter().enumerate() {
        let o = &s.outcome;
        out.push_str(&format!(
            "| {} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            s.rate,
            figure(o, "deliveries_per_sec"),
            f(figure(o, "p50_ms")),
            f(figure(o, "p99_ms")),
            f(figure(o, "max_ms")),
            s.commit_p99_ms.map(f).unwrap_or_else(|| "—".into()),
            figure(o, "lost"),
            f(figure(o, "server_cpu_secs")),
            f(figure(o, "client_cpu_secs")),
            if s.held { "yes" } else { "**no**" }
        ));
    }
    out
}

/// Run the ramp; print and write what it found. Ok(true) when some step held.
pub async fn run(a: Args, r: Ramp, env: Value) -> Result<bool, String> {
    let mut steps: Vec<Step> = Vec::new();
    let (mut lo, mut hi, mut bisected) = (None::<f64>, None::<f64>, 0u32);
    let mut rate = r.start;
    loop {
        eprintln!(
            "ramp step {}: {rate:.1} msg/s per publisher",
            steps.len() + 1
        );
        let s = step(&a, &r, rate).await?;
        // Steps after the first failure are the bisection's.
        if hi.is_some() {
            bisected += 1;
        }
        if s.held {
            lo = Some(lo.map_or(rate, |l: f64| l.max(rate)));
        } else {
            hi = Some(hi.map_or(rate, |h: f64| h.min(rate)));
        }
        steps.push(s);
        match r.next(rate, lo, hi, bisected) {
            Some(n) => rate = n,
            None => break,
        }
    }
    let best = steps.iter().filter(|s| s.held).max_by(|x, y| {
        figure(&x.outcome, "deliveries_per_sec")
            .total_cmp(&figure(&y.outcome, "deliveries_per_sec"))
    });
    let best_deliveries = best.map(|s| figure(&s.outcome, "deliveries_per_sec"));
    let table = table(&steps);
    let summary = match best_deliveries {
        Some(d) => format!(
            "held up to {d:.0} deliveries/s with p99 ≤ {} ms ({:.1} msg/s per publisher)",
            r.p99_ms,
            best.map(|s| s.rate).unwrap_or(0.0)
        ),
        None => format!("no step held (p99 ≤ {} ms, nothing lost)", r.p99_ms),
    };
    let result = json!({
        "environment": env,
        "ramp": {"start": r.start, "factor": r.factor, "step_secs": r.step.as_secs_f64(), "p99_ms": r.p99_ms},
        "max_deliveries_per_sec": best_deliveries,
        "steps": steps.iter().map(|s| json!({
            "rate_per_publisher": s.rate,
            "held": s.held,
            "commit_p99_ms": s.commit_p99_ms,
            "run": s.outcome.detail,
            "p99_ms_per_second": s.outcome.series.iter().map(|x| json!([x.t, x.p99])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let json_text = serde_json::to_string_pretty(&result).unwrap_or_default();
    if a.json {
        eprintln!("\n{table}\n{summary}");
        println!("{json_text}");
    } else {
        println!("{table}\n{summary}");
    }
    if let Some(prefix) = &a.out {
        let svg = best
            .map(|s| {
                crate::chart::svg(
                    &format!(
                        "ramp: the highest step that held, {:.1} msg/s per publisher",
                        s.rate
                    ),
                    &s.outcome.series,
                    r.step.as_secs(),
                )
            })
            .unwrap_or_default();
        for (ext, body) in [
            ("json", json_text),
            ("md", format!("{table}\n{summary}\n")),
            ("svg", svg),
        ] {
            let path = format!("{prefix}.{ext}");
            std::fs::write(&path, body).map_err(|e| format!("{path}: {e}"))?;
            eprintln!("wrote {path}");
        }
    }
    Ok(best.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_grows_then_bisects_twice() {
        let r = Ramp::parse("25,1.6,3,50").expect("parse");
        assert_eq!(r.next(25.0, Some(25.0), None, 0), Some(40.0));
        // 40 failed: halfway between 25 and 40, then once more, then done.
        assert_eq!(r.next(40.0, Some(25.0), Some(40.0), 0), Some(32.5));
        assert_eq!(r.next(32.5, Some(32.5), Some(40.0), 1), Some(36.25));
        assert_eq!(r.next(36.25, Some(32.5), Some(40.0), 2), None);
        // The first step failed: bisect below it.
        assert_eq!(r.next(25.0, None, Some(25.0), 0), Some(12.5));
        assert!(Ramp::parse("25,1,3,50").is_err());
        assert!(Ramp::parse("25,1.6,3").is_err());
        let capped = Ramp::parse("50,2,1,100,200").expect("parse");
        assert_eq!(capped.next(100.0, Some(100.0), None, 0), Some(200.0));
        assert_eq!(capped.next(200.0, Some(200.0), None, 0), None);
    }

    #[test]
    fn commit_p99_comes_from_the_bucket_deltas() {
        let before = "crossroom_commit_latency_seconds_bucket{node=\"n\",le=\"0.001\"} 10\n\
                      crossroom_commit_latency_seconds_bucket{node=\"n\",le=\"0.01\"} 10\n\
                      crossroom_commit_latency_seconds_bucket{node=\"n\",le=\"+Inf\"} 10\n";
        let after = "crossroom_commit_latency_seconds_bucket{node=\"n\",le=\"0.001\"} 60\n\
                     crossroom_commit_latency_seconds_bucket{node=\"n\",le=\"0.01\"} 108\n\
                     crossroom_commit_latency_seconds_bucket{node=\"n\",le=\"+Inf\"} 110\n";
        let b = parse_buckets(before, "crossroom_commit_latency_seconds_bucket");
        let e = parse_buckets(after, "crossroom_commit_latency_seconds_bucket");
        // 100 new: 50 under 1 ms, 48 more under 10 ms, 2 above: the 99th is above 10 ms.
        assert_eq!(p99_between(&b, &e), Some(f64::INFINITY));
        let e2 = parse_buckets(
            &after.replace(" 110", " 108"),
            "crossroom_commit_latency_seconds_bucket",
        );
        assert_eq!(p99_between(&b, &e2), Some(10.0));
    }
}
