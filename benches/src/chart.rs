//! The chart of `docs/benchmarks.svg`: every row that has a raw figure, as a
//! bar of its ratio to the raw library (1.0 = as fast as raw), coloured by
//! its verdict.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Row, Verdict};

/// Draws the ratio chart of `rows` into an SVG file at `path`. Rows without
/// a ratio are left out. For latencies the ratio is inverted (raw / backend)
/// so that in the chart a longer bar is always better.
pub fn draw(rows: &[Row], title: &str, path: &Path) -> crate::BenchResult<()> {
    let bars: Vec<(String, f64, Verdict)> = rows
        .iter()
        .filter_map(|r| {
            let ratio = r.ratio()?;
            let shown = if r.unit.higher_is_better() {
                ratio
            } else if ratio > 0.0 {
                1.0 / ratio
            } else {
                return None;
            };
            Some((
                format!("{} · {}: {:.2}x", r.operation, r.backend, shown),
                shown,
                r.verdict(),
            ))
        })
        .collect();
    let n = bars.len().max(1);
    // A log axis: ratios here span 0.01x to 20x.
    let xmax = bars.iter().map(|b| b.1).fold(2.0_f64, f64::max) * 1.5;
    let xmin = bars.iter().map(|b| b.1).fold(0.5_f64, f64::min) / 1.5;
    let height = 90 + 26 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(8)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("speed relative to the raw library in the same run, log scale (1.0 = raw; latencies inverted)")
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio, verdict))| {
        let y = (n - 1 - i) as f64;
        let color = match verdict {
            Verdict::Met => RGBColor(60, 160, 90),
            Verdict::Missed => RGBColor(210, 70, 60),
            _ => RGBColor(120, 140, 170),
        };
        Rectangle::new([(xmin, y + 0.15), (*ratio, y + 0.85)], color.filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (label, _, _))| {
        let y = (n - 1 - i) as f64 + 0.5;
        Text::new(
            label.clone(),
            (xmin * 1.05, y),
            ("sans-serif", 13).into_font(),
        )
    }))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, n as f64)],
        BLACK.stroke_width(1),
    )))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Stats, Target, Unit};

    #[test]
    fn draws_an_svg_with_every_bar() {
        let mut a = Row::new("batched append", "sqlite", Unit::OpsPerSec);
        a.stats = Stats::of(&[90.0]);
        a.raw = Some(("rusqlite".into(), Stats::of(&[100.0]).unwrap()));
        a.target = Some(Target::RatioAtLeast(0.8));
        let mut b = Row::new("get_recent(50)", "postgres", Unit::Millis);
        b.stats = Stats::of(&[2.0]);
        b.raw = Some(("tokio-postgres".into(), Stats::of(&[1.0]).unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        draw(&[a, b], "test", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("batched append · sqlite: 0.90x"), "{svg}");
        assert!(svg.contains("get_recent(50) · postgres: 0.50x"), "{svg}");
    }
}
