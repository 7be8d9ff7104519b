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

/// A round step for an axis of `range` in about `ticks` steps: 1, 2 or 5 times a power of ten.
fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(f64::MIN_POSITIVE);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// A tick label: no trailing zeros.
fn label(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// An SVG chart of p50, p99 and max latency per second over the run (`duration` seconds: the x
/// axis spans the whole run, late seconds included), with ticks, gridlines and a legend.
pub fn svg(title: &str, series: &[Second], duration: u64) -> String {
    const W: f64 = 800.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 70.0;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let peak = series
        .iter()
        .map(|s| s.max)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let y_step = nice_step(peak, 5.0);
    let top = y_step * (peak / y_step).ceil();
    let last = series
        .last()
        .map(|s| s.t + 1)
        .unwrap_or(0)
        .max(duration)
        .max(1) as f64;
    let x_step = nice_step(last, 8.0).max(1.0);
    let x = |t: f64| LEFT + pw * t / last;
    let y = |ms: f64| TOP + ph - ph * ms / top;
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="22" font-size="14">{}</text>
"##,
        escape(title)
    );
    // y: gridlines and ticks in ms.
    let mut v = 0.0;
    while v <= top + y_step / 2.0 {
        let yy = y(v);
        out.push_str(&format!(
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{}"/>
<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>
"##,
            W - RIGHT,
            if v == 0.0 { "#888" } else { "#e6e6e6" },
            LEFT - 6.0,
            yy + 4.0,
            label(v)
        ));
        v += y_step;
    }
    // x: gridlines and ticks in seconds since the first arrival.
    let mut t = 0.0;
    while t <= last + 0.001 {
        let xx = x(t);
        out.push_str(&format!(
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="{}"/>
<text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>
"##,
            TOP + ph + 5.0,
            if t == 0.0 { "#888" } else { "#e6e6e6" },
            TOP + ph + 18.0,
            label(t)
        ));
        t += x_step;
    }
    out.push_str(&format!(
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">seconds since the first delivery</text>
<text x="16" y="{:.1}" text-anchor="middle" fill="#333" transform="rotate(-90 16 {:.1})">latency (ms)</text>
"##,
        LEFT + pw / 2.0,
        TOP + ph + 36.0,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
    ));
    type Pick = fn(&Second) -> f64;
    let lines: [(&str, &str, Pick); 3] = [
        ("p50", "#2f6fde", |s| s.p50),
        ("p99", "#e0782f", |s| s.p99),
        ("max", "#999999", |s| s.max),
    ];
    for (i, (name, color, pick)) in lines.iter().enumerate() {
        let points = series
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t as f64 + 0.5), y(pick(s))))
            .collect::<Vec<_>>()
            .join(" ");
        let lx = LEFT + i as f64 * 140.0;
        let ly = H - 14.0;
        out.push_str(&format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>
<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{color}"/>
<text x="{:.1}" y="{ly:.1}">{name} per second</text>
"#,
            ly - 10.0,
            lx + 16.0,
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
    fn the_chart_has_a_line_per_percentile_axes_and_a_legend() {
        let svg = svg(
            "t <1>",
            &per_second(&seconds(&[(0, 1_000), (1, 3_000)])),
            10,
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("t &lt;1>"));
        for legend in ["p50 per second", "p99 per second", "max per second"] {
            assert!(svg.contains(legend), "{legend}");
        }
        // The x axis spans the whole run (10 s), not only the seconds that had deliveries.
        assert!(svg.contains(">10</text>"), "{svg}");
        // y ticks up to the peak (3 ms), with gridlines.
        assert!(
            svg.contains(">3</text>") && svg.matches("<line").count() >= 8,
            "{svg}"
        );
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(3.0, 5.0), 1.0);
        assert_eq!(nice_step(47.0, 5.0), 10.0);
        assert_eq!(nice_step(0.3, 5.0), 0.1);
        assert_eq!(label(0.30000000000000004), "0.3");
    }
}
