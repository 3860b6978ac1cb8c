//! Charts drawn on the server as SVG: no script, nothing downloaded.

use std::fmt::Write;

/// One line of a chart.
pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    pub(crate) color: &'a str,
    /// One value per label; `None` where there is nothing to show.
    pub(crate) values: Vec<Option<f64>>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;

/// A line chart of `series` over `labels`, from 0 to the largest value
/// (or `max` when given), each axis labelled.
pub(crate) fn lines(
    title: &str,
    unit: &str,
    labels: &[String],
    series: &[Series<'_>],
    max: Option<f64>,
) -> String {
    let top = max.unwrap_or_else(|| {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0.0_f64, |a, b| a.max(*b))
    });
    let top = if top > 0.0 { top } else { 1.0 };
    let n = labels.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + (W - LEFT - RIGHT) / 2.0
        } else {
            LEFT + (W - LEFT - RIGHT) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / top);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{t}" class="chart"><title>{t}</title>"#,
        t = escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="16" class="chart-title">{}</text>"#,
        escape(title)
    );
    // Axes and three grid lines with their values.
    for k in 0..=2 {
        let v = top * k as f64 / 2.0;
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" class="axis">{} {}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            yy + 4.0,
            format_value(v),
            escape(unit)
        );
    }
    let step = (n / 6).max(1);
    for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % step == 0) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" class="axis">{}</text>"#,
            x(i),
            H - BOTTOM + 16.0,
            escape(label)
        );
    }
    for (k, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{p}"/>"#,
            c = escape(s.color),
            p = points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                svg,
                r#"<circle cx="{px}" cy="{py}" r="3" fill="{}"/>"#,
                escape(s.color)
            );
        }
        let lx = LEFT + 8.0 + 110.0 * k as f64;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}" class="axis">{}</text>"#,
            H - 14.0,
            lx + 14.0,
            H - 5.0,
            escape(s.name),
            c = escape(s.color)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn format_value(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_its_text_and_draws_each_point() {
        let labels = vec!["2026-12-01".to_string(), "2026-12-02".to_string()];
        let series = [Series {
            name: "p<50>",
            color: "#1f77b4",
            values: vec![Some(10.0), Some(20.0)],
        }];
        let svg = lines("a & b", "ms", &labels, &series, None);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &amp; b"));
        assert!(svg.contains("p&lt;50&gt;"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("NaN"));
    }
}
