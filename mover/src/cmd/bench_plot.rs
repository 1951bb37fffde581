//! `--plot FILE` of `bench net` and `bench e2e`: an SVG of rate over time (Gbit/s) and, where the run has
//! them, retransmissions over time in a second panel, drawn with `plotters` (docs/decisions/0019).
//!
//! Each series is one `<polyline>` with one point per sampled interval ([`super::bench_sampler::INTERVAL`]),
//! so the file shows every stall and ramp the sampler saw.

use super::bench_sampler::Interval;
use plotters::prelude::*;
use std::path::Path;

/// What the chart shows and how its series are named.
#[derive(Clone, Debug)]
pub struct PlotSpec {
    /// The title: the command and its parameters.
    pub title: String,
    /// The name of [`Interval::bps`] ("goodput", "received").
    pub rate_name: &'static str,
    /// The name of [`Interval::other_bps`], if plotted ("on the wire", "sent").
    pub other_name: Option<&'static str>,
    /// The name of [`Interval::target_bps`], if plotted ("policy rate").
    pub target_name: Option<&'static str>,
    /// The name of [`Interval::events`] for a second panel, if any ("retransmitted packets").
    pub events_name: Option<&'static str>,
}

const WIDTH: u32 = 1000;
const HEIGHT_ONE_PANEL: u32 = 460;
const HEIGHT_TWO_PANELS: u32 = 700;
/// The rate axis reaches this many times the highest rate: the top quarter is left to the legend.
const LEGEND_HEADROOM: f64 = 1.4;
/// Share of the height the rate panel takes when there are two.
const RATE_PANEL_SHARE: f64 = 0.62;

/// Which number of an interval a series plots.
type Value = fn(&Interval) -> f64;

/// Bits per second to the plotted unit.
fn gbit(bps: f64) -> f64 {
    bps / 1e9
}

/// Checks, before a run, that `--plot FILE` can be written where it is asked for: its directory exists.
pub fn check_path(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(format!("--plot {}: no directory {}: create it or give another path", path.display(), dir.display()))
        }
        _ if path.is_dir() => {
            Err(format!("--plot {} is a directory: give a file name such as run.svg", path.display()))
        }
        _ => Ok(()),
    }
}

/// Writes the chart of `intervals` to `path` as SVG.
pub fn write_svg(path: &Path, spec: &PlotSpec, intervals: &[Interval]) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| format!("--plot {}: {e}", path.display());
    if intervals.is_empty() {
        return Err(failed(&"the run ended before the first 100 ms sample: nothing to plot"));
    }
    let height = if spec.events_name.is_some() { HEIGHT_TWO_PANELS } else { HEIGHT_ONE_PANEL };
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let root = root.titled(&spec.title, ("sans-serif", 17)).map_err(|e| failed(&e))?;
    let t_max = intervals.last().map_or(1.0, |i| i.end).max(0.1);
    let (rate_area, events_area) = if spec.events_name.is_some() {
        let split = (f64::from(height) * RATE_PANEL_SHARE) as u32;
        let (a, b) = root.split_vertically(split);
        (a, Some(b))
    } else {
        (root.clone(), None)
    };

    let y_max = intervals
        .iter()
        .map(|i| {
            let mut y = i.bps;
            if spec.other_name.is_some() {
                y = y.max(i.other_bps);
            }
            if spec.target_name.is_some() {
                y = y.max(i.target_bps as f64);
            }
            gbit(y)
        })
        .fold(0.0, f64::max);
    // Headroom above the highest point, where the legend goes (no line runs through it); a floor so an
    // idle run still has an axis.
    let y_max = (y_max * LEGEND_HEADROOM).max(0.01);
    let mut chart = ChartBuilder::on(&rate_area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("rate (Gbit/s)")
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(|e| failed(&e))?;
    // The measured rate last, so it is drawn on top of the others.
    let series: [(Option<&str>, RGBColor, Value); 3] = [
        (spec.other_name, RGBColor(0x9a, 0x9a, 0x9a), |i| i.other_bps),
        (spec.target_name, RGBColor(0xd0, 0x70, 0x10), |i| i.target_bps as f64),
        (Some(spec.rate_name), RGBColor(0x1f, 0x5f, 0xbf), |i| i.bps),
    ];
    for (name, color, value) in series {
        let Some(name) = name else { continue };
        chart
            .draw_series(LineSeries::new(intervals.iter().map(|i| (i.end, gbit(value(i)))), color.stroke_width(2)))
            .map_err(|e| failed(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| failed(&e))?;

    if let (Some(area), Some(name)) = (events_area, spec.events_name) {
        let e_max = intervals.iter().map(|i| i.events).max().unwrap_or(0).max(1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..e_max)
            .map_err(|e| failed(&e))?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc(format!("{name} per 100 ms"))
            // Counts are whole: a tick between two whole numbers stays unlabelled.
            .y_label_formatter(&|y| if (y - y.round()).abs() < 1e-6 { format!("{y:.0}") } else { String::new() })
            .draw()
            .map_err(|e| failed(&e))?;
        let red = RGBColor(0xc0, 0x20, 0x20);
        chart
            .draw_series(LineSeries::new(intervals.iter().map(|i| (i.end, i.events as f64)), red.stroke_width(2)))
            .map_err(|e| failed(&e))?;
    }
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(events: bool) -> PlotSpec {
        PlotSpec {
            title: "bench test <&> --size 1G".into(),
            rate_name: "goodput",
            other_name: Some("on the wire"),
            target_name: Some("policy rate"),
            events_name: events.then_some("retransmitted packets"),
        }
    }

    fn polylines(svg: &str) -> Vec<usize> {
        svg.split("<polyline")
            .skip(1)
            .map(|p| {
                let points = p.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
                points.split_whitespace().count()
            })
            .collect()
    }

    #[test]
    fn writes_one_polyline_point_per_interval() {
        let dir = crate::testing::TempDir::new("h5-plot");
        let iv: Vec<Interval> = (1..=37)
            .map(|k| Interval {
                end: k as f64 * 0.1,
                seconds: 0.1,
                bps: 2e9 + k as f64 * 1e7,
                other_bps: 2.1e9,
                events: k % 4,
                target_bps: 2_500_000_000,
            })
            .collect();
        for events in [true, false] {
            let path = dir.path().join(format!("p{events}.svg"));
            write_svg(&path, &spec(events), &iv).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
            assert!(svg.contains("rate (Gbit/s)") && svg.contains("time (s)"), "axes are labelled");
            assert!(svg.contains("&lt;&amp;&gt;"), "the title is escaped");
            let lines = polylines(&svg);
            let full = lines.iter().filter(|&&n| n == 37).count();
            // goodput, on the wire, policy rate, and retransmissions in the second panel.
            assert_eq!(full, if events { 4 } else { 3 }, "{lines:?}");
        }
        let err = write_svg(&dir.path().join("none.svg"), &spec(true), &[]).unwrap_err();
        assert!(err.contains("nothing to plot"), "{err}");
    }
}
