//! Latency percentiles over time, and an SVG line chart of them (no dependency: a few lines of
//! SVG text).

use crate::hist::Hist;

/// One second of the run: percentiles (ms) of the latencies of the messages that arrived in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Second {
    /// Seconds since the first arrival.
    pub t: u64,
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Percentiles per second, from one histogram per second of the run (empty seconds skipped).
pub fn per_second(seconds: &[Hist]) -> Vec<Second> {
    seconds
        .iter()
        .enumerate()
        .filter(|(_, h)| h.count() > 0)
        .map(|(t, h)| Second {
            t: t as u64,
            count: h.count() as usize,
            p50: h.quantile_ms(0.5),
            p99: h.quantile_ms(0.99),
            max: h.quantile_ms(1.0),
        })
        .collect()
}

/// An SVG chart of p50, p99 and max latency per second.
pub fn svg(title: &str, series: &[Second]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 400.0;
    const PAD: f64 = 50.0;
    let top = series.iter().map(|s| s.max).fold(1.0_f64, f64::max).ceil();
    let last = series.last().map(|s| s.t).unwrap_or(0).max(1) as f64;
    let x = |t: u64| PAD + (W - 2.0 * PAD) * t as f64 / last;
    let y = |ms: f64| H - PAD - (H - 2.0 * PAD) * ms / top;
    let line = |pick: fn(&Second) -> f64| {
        series
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t), y(pick(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{PAD}" y="20" font-size="14">{}</text>
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/>
<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="#888"/>
<text x="5" y="{PAD}">{top} ms</text>
<text x="5" y="{b}">0</text>
<text x="{r}" y="{lb}" text-anchor="end">{last} s</text>
"##,
        escape(title),
        b = H - PAD,
        r = W - PAD,
        lb = H - PAD + 20.0,
    );
    for (name, color, pick, dy) in [
        (
            "p50",
            "#2f6fde",
            (|s: &Second| s.p50) as fn(&Second) -> f64,
            0.0,
        ),
        ("p99", "#e0782f", |s: &Second| s.p99, 15.0),
        ("max", "#999999", |s: &Second| s.max, 30.0),
    ] {
        out.push_str(&format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>
<text x="{}" y="{}" fill="{color}">{name}</text>
"#,
            line(pick),
            W - PAD + 5.0,
            PAD + dy,
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(samples: &[(usize, u64)]) -> Vec<Hist> {
        let mut out = vec![Hist::default(); 3];
        for (t, l) in samples {
            out[*t].record(*l);
        }
        out
    }

    #[test]
    fn percentiles_per_second() {
        let s = per_second(&seconds(&[(0, 2_000), (0, 4_000), (2, 10_000)]));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].t, s[0].count, s[0].max), (0, 2, 4.0));
        assert_eq!(s[1].t, 2);
        assert!((s[1].p50 - 10.0).abs() < 0.2, "{}", s[1].p50);
        assert!(per_second(&[]).is_empty());
    }

    #[test]
    fn the_chart_has_a_line_per_percentile() {
        let svg = svg("t <1>", &per_second(&seconds(&[(0, 1_000), (1, 3_000)])));
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("t &lt;1>"));
    }
}
