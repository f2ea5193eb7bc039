//! `throughput.svg` and `latency.svg`: one line per scenario against concurrency. Drawn with
//! plotters' SVG backend alone, which writes text as SVG text, so no font library is needed.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::report::Results;

/// Writes both charts into `dir`.
pub fn write_charts(results: &Results, dir: &Path) -> anyhow::Result<()> {
    let series = |figure: fn(&crate::stats::Summary) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
        results
            .scenarios
            .iter()
            .map(|s| {
                let points = s
                    .points
                    .iter()
                    .map(|p| (p.concurrency as f64, figure(&p.summary)))
                    .collect();
                (s.name.clone(), points)
            })
            .collect()
    };
    line_chart(
        &dir.join("throughput.svg"),
        "Throughput against concurrency",
        "successful requests per second",
        &series(|s| s.throughput),
    )?;
    line_chart(
        &dir.join("latency.svg"),
        "p99 latency against concurrency",
        "p99 latency, ms",
        &series(|s| s.p99_ms),
    )
}

/// A chart of `series` on log-log axes, the legend in a column of its own so it hides no
/// line. Points with a zero value are left out: a log axis has no place for them.
fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let positive = |&&(x, y): &&(f64, f64)| x > 0.0 && y > 0.0;
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, points)| points.iter().filter(positive).copied())
        .collect();
    // Concurrency doubles from point to point, so x is drawn as log2(C) on a plain axis whose
    // labels are powers of two: every sweep point lands on a labelled tick.
    let x_max = all.iter().map(|p| p.0.log2()).fold(1.0, f64::max);
    let y_min = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max);
    let (y_min, y_max) = if all.is_empty() {
        (1.0, 10.0)
    } else {
        (y_min / 1.5, y_max * 1.5)
    };

    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let (plot, legend) = root.split_horizontally(800);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.25f64..x_max + 0.25, (y_min..y_max).log_scale())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_desc("concurrency (workers, one request in flight each)")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{}", 2f64.powf(x.round())))
        .y_label_formatter(&|y| {
            if *y >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(draw_error)?;
    let label_style = ("sans-serif", 15).into_font().color(&BLACK);
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = points
            .iter()
            .filter(positive)
            .map(|&(x, y)| (x.log2(), y))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(draw_error)?;
        chart
            .draw_series(PointSeries::of_element(
                points,
                4,
                color.filled(),
                &|c, s, st| Circle::new(c, s, st),
            ))
            .map_err(draw_error)?;
        let y = 70 + 24 * i32::try_from(i)?;
        legend
            .draw(&PathElement::new(
                vec![(10, y), (36, y)],
                color.stroke_width(3),
            ))
            .map_err(draw_error)?;
        legend
            .draw(&Text::new(name.as_str(), (44, y - 8), label_style.clone()))
            .map_err(draw_error)?;
    }
    root.present().map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chart_has_a_line_and_a_legend_entry_per_scenario() {
        let mut results = crate::report::tests::small();
        // A point with no successes has no place on a log axis and must not break the chart.
        results.scenarios[1].points[0].summary.throughput = 0.0;
        let dir = std::env::temp_dir().join(format!("bench-chart-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        write_charts(&results, &dir).unwrap();
        let throughput = std::fs::read_to_string(dir.join("throughput.svg")).unwrap();
        let latency = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for svg in [&throughput, &latency] {
            for name in ["buy-direct", "login", "bare-direct"] {
                assert!(
                    svg.contains(&format!(">\n{name}\n</text>")),
                    "no legend for {name}"
                );
            }
        }
        // Data lines are 2 px wide (axes 1, legend swatches 3). buy-direct and bare-direct
        // have points; login's only point was zero, on the throughput chart.
        let lines = |svg: &str| svg.matches(r#"stroke-width="2" points="#).count();
        assert_eq!(lines(&throughput), 2, "{throughput}");
        assert_eq!(lines(&latency), 3, "{latency}");
        assert!(throughput.contains("Throughput against concurrency"));
    }
}
