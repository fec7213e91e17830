//! PNG and SVG plots of metric curves (plotters' bitmap and SVG backends, bundled DejaVu
//! Sans font).
use std::path::Path;
use std::sync::Once;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::error::{Error, Result};

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One curve: a label and (x, value) points, and for a group of seeds the ±1 sd band as
/// (x, low, high) (empty otherwise).
#[derive(Debug, Clone, Default)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
}

/// Trailing moving average over `k` points (k ≤ 1: unchanged). Non-finite points are dropped.
pub fn smooth(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, y)| y.is_finite())
        .collect();
    if k <= 1 {
        return pts;
    }
    let mut out = Vec::with_capacity(pts.len());
    let mut sum = 0.0;
    for i in 0..pts.len() {
        let start = (i + 1).saturating_sub(k);
        if i % k == 0 {
            // A running sum that drops values of 0.7 and keeps values of 1e-8 is left with
            // their rounding error, which can be negative: a loss drawn below zero (a gap on a
            // log axis). Summing the window afresh every k points bounds the error.
            sum = pts[start..=i].iter().map(|p| p.1).sum();
        } else {
            sum += pts[i].1;
            if i >= k {
                sum -= pts[i - k].1;
            }
        }
        let n = (i + 1 - start) as f64;
        out.push((pts[i].0, sum / n));
    }
    out
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: cannot draw the plot: {e}", path.display()))
}

/// What the axes show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Axes {
    /// Logarithmic y axis (non-positive values are dropped).
    pub log: bool,
    /// The x values are wall-clock seconds, not steps.
    pub time: bool,
}

/// Draws `curves` of one metric into a 960×540 picture at `out`: PNG or SVG by the file's
/// extension (see [`plot_path`]).
pub fn plot_file(
    out: &Path,
    title: &str,
    metric: &str,
    curves: &[Curve],
    axes: Axes,
) -> Result<()> {
    register_font();
    let svg = out
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        let root = SVGBackend::new(out, (960, 540)).into_drawing_area();
        draw(root, out, title, metric, curves, axes)
    } else {
        let root = BitMapBackend::new(out, (960, 540)).into_drawing_area();
        draw(root, out, title, metric, curves, axes)
    }
}

/// [`plot_file`] on a drawing area (`out` names the file in errors).
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    out: &Path,
    title: &str,
    metric: &str,
    curves: &[Curve],
    axes: Axes,
) -> Result<()> {
    let log = axes.log;
    let to_y = |y: f64| if log { y.log10() } else { y };
    let curves: Vec<Curve> = curves
        .iter()
        .map(|c| Curve {
            label: c.label.clone(),
            points: c
                .points
                .iter()
                .copied()
                .filter(|(_, y)| y.is_finite() && (!log || *y > 0.0))
                // A log axis is drawn as log10 values on a linear axis labelled with 10^v,
                // so narrow ranges (less than a decade) still get tick labels.
                .map(|(x, y)| (x, to_y(y)))
                .collect(),
            band: c
                .band
                .iter()
                .copied()
                .filter(|(_, lo, hi)| lo.is_finite() && hi.is_finite() && (!log || *lo > 0.0))
                .map(|(x, lo, hi)| (x, to_y(lo), to_y(hi)))
                .collect(),
        })
        .collect();
    let all = || {
        curves.iter().flat_map(|c| {
            c.points
                .iter()
                .copied()
                .chain(c.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
        })
    };
    if all().next().is_none() {
        return Err(Error::Invalid(format!("no `{metric}` values to plot")));
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in all() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        // One step: centred, with a step either side.
        x0 -= 1.0;
        x1 += 1.0;
    }
    let non_negative = y0 >= 0.0;
    if y1 <= y0 {
        // One value: a narrow band around it (an accuracy of 0 is not drawn on −1…1).
        let pad = if y0 == 0.0 { 0.05 } else { y0.abs() * 0.05 };
        y0 -= pad;
        y1 += pad;
    } else {
        let pad = (y1 - y0) * 0.05;
        y0 -= pad;
        y1 += pad;
    }
    if non_negative && !log {
        // Accuracies, losses, rates: no negative part of the axis.
        y0 = y0.max(0.0);
    }
    let y_span = y1 - y0;
    root.fill(&WHITE).map_err(|e| plot_err(out, e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80);
    let mut chart = builder
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| plot_err(out, e))?;
    let y_fmt = |v: &f64| {
        // Rounding noise of the tick positions (6.9e-18 for 0) is 0.
        let v = if v.abs() < y_span * 1e-9 { 0.0 } else { *v };
        if log { fmt_log_tick(v) } else { fmt_tick(v) }
    };
    let y_desc = if log {
        format!("{metric} (log scale)")
    } else {
        metric.to_string()
    };
    chart
        .configure_mesh()
        .x_desc(if axes.time { "wall time (s)" } else { "step" })
        .y_desc(y_desc)
        .x_label_formatter(&|x| {
            if axes.time && x.abs() < 10.0 {
                fmt_tick(*x)
            } else {
                format!("{x:.0}")
            }
        })
        .y_label_formatter(&y_fmt)
        .x_labels(if axes.time { 6 } else { x_label_count(x0, x1) })
        .y_labels(8)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| plot_err(out, e))?;
    for (i, c) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // Past the palette, the line style changes too (solid, dashed, dotted), so that no
        // two of 24 curves look the same.
        let cycle = i / PALETTE.len() % 3;
        if c.band.len() >= 2 {
            // ±1 sd of a seed group: the band's upper edge forward, its lower edge back.
            let outline: Vec<(f64, f64)> = c
                .band
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(c.band.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    color.mix(0.18).filled(),
                )))
                .map_err(|e| plot_err(out, e))?;
        }
        // A line needs two points: short series also get a marker at each point, so a
        // run with a single evaluation still shows.
        if c.points.len() < 20 {
            chart
                .draw_series(c.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| plot_err(out, e))?;
        }
        let style = color.stroke_width(2);
        let points = c.points.iter().copied();
        let drawn = match cycle {
            0 => chart.draw_series(LineSeries::new(points, style)),
            1 => chart.draw_series(DashedLineSeries::new(points, 10, 6, style)),
            _ => chart.draw_series(DashedLineSeries::new(points, 2, 5, style)),
        };
        drawn
            .map_err(|e| plot_err(out, e))?
            .label(c.label.clone())
            .legend(move |(x, y)| match cycle {
                0 => PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)).into_dyn(),
                1 => DashedPathElement::new(vec![(x, y), (x + 24, y)], 8, 4, color.stroke_width(3))
                    .into_dyn(),
                _ => DashedPathElement::new(vec![(x, y), (x + 24, y)], 2, 4, color.stroke_width(3))
                    .into_dyn(),
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 16))
        .position(legend_corner(&curves, (x0, x1), (y0, y1)))
        .draw()
        .map_err(|e| plot_err(out, e))?;
    root.present().map_err(|e| plot_err(out, e))?;
    Ok(())
}

/// Where the plot goes: `out`, with `.png` added when it has no extension; `.png` and `.svg`
/// are written, another extension is refused, naming those.
pub fn plot_path(out: &Path) -> Result<std::path::PathBuf> {
    match out.extension().and_then(|e| e.to_str()) {
        None => Ok(out.with_extension("png")),
        Some(e) if e.eq_ignore_ascii_case("png") || e.eq_ignore_ascii_case("svg") => {
            Ok(out.to_path_buf())
        }
        Some(e) => Err(Error::Invalid(format!(
            "{}: cannot write a .{e} plot; use .png or .svg (no extension: .png)",
            out.display()
        ))),
    }
}

/// The corner of the plot where the legend covers the fewest points (upper right on a tie):
/// an accuracy that rises to 1 keeps its top right corner free of the legend.
pub fn legend_corner(
    curves: &[Curve],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    // The legend's size as a share of the plot: ~8 px per character of the longest label
    // plus the sample line, ~22 px per row, on a ~850 × 430 px plotting area.
    let longest = curves
        .iter()
        .map(|c| c.label.chars().count())
        .max()
        .unwrap_or(0);
    let w = ((longest as f64 * 8.0 + 60.0) / 850.0).min(0.9);
    let h = ((curves.len() as f64 * 22.0 + 12.0) / 430.0).min(0.9);
    let (dx, dy) = (
        (x1 - x0).max(f64::MIN_POSITIVE),
        (y1 - y0).max(f64::MIN_POSITIVE),
    );
    let covered = |right: bool, upper: bool| {
        curves
            .iter()
            .flat_map(|c| c.points.iter())
            .filter(|(x, y)| {
                let (fx, fy) = ((x - x0) / dx, (y - y0) / dy);
                let in_x = if right { fx >= 1.0 - w } else { fx <= w };
                let in_y = if upper { fy >= 1.0 - h } else { fy <= h };
                in_x && in_y
            })
            .count()
    };
    [
        (SeriesLabelPosition::UpperRight, covered(true, true)),
        (SeriesLabelPosition::LowerRight, covered(true, false)),
        (SeriesLabelPosition::UpperLeft, covered(false, true)),
        (SeriesLabelPosition::LowerLeft, covered(false, false)),
    ]
    .into_iter()
    .min_by_key(|(_, n)| *n)
    .map(|(p, _)| p)
    .unwrap_or(SeriesLabelPosition::UpperRight)
}

/// How many x tick labels: one per step on short runs (steps are whole numbers, so more
/// labels than steps would repeat them), at most 10.
pub fn x_label_count(x0: f64, x1: f64) -> usize {
    let span = (x1 - x0).max(0.0).floor() as usize + 1;
    span.clamp(2, 10)
}

/// The label of a log-axis tick at `10^e`: a decade reads as a round number ("1", "0.01",
/// "1000", "1e-6"), anything between with two significant digits.
fn fmt_log_tick(e: f64) -> String {
    let r = e.round();
    if (e - r).abs() > 1e-9 {
        let v = 10f64.powf(e);
        return if !(1e-3..1e5).contains(&v) {
            format!("{v:.1e}")
        } else {
            let digits = (1.0 - v.log10().floor()).max(0.0) as usize;
            format!("{v:.digits$}")
        };
    }
    match r as i32 {
        k @ -3..=-1 => format!("{:.*}", (-k) as usize, 10f64.powi(k)),
        k @ 0..=4 => format!("{}", 10i64.pow(k as u32)),
        k => format!("1e{k}"),
    }
}

/// A tick label with about three significant digits.
fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_read_as_round_numbers() {
        let labels: Vec<String> = [-8.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 3.0, 5.0]
            .into_iter()
            .map(fmt_log_tick)
            .collect();
        assert_eq!(
            labels,
            [
                "1e-8", "1e-4", "0.001", "0.01", "0.1", "1", "10", "1000", "1e5"
            ]
        );
        assert_eq!(fmt_log_tick(0.5), "3.2");
        assert_eq!(fmt_log_tick(-1.5), "0.032");
        assert_eq!(fmt_log_tick(-6.5), "3.2e-7");
    }

    #[test]
    fn output_paths_and_tick_counts() {
        assert_eq!(
            plot_path(Path::new("plots/noext")).unwrap(),
            Path::new("plots/noext.png")
        );
        assert_eq!(plot_path(Path::new("a.PNG")).unwrap(), Path::new("a.PNG"));
        assert_eq!(plot_path(Path::new("f.svg")).unwrap(), Path::new("f.svg"));
        let e = plot_path(Path::new("fig.gif")).unwrap_err().to_string();
        assert!(
            e.contains("fig.gif") && e.contains(".png") && e.contains(".svg"),
            "{e}"
        );
        // Steps 1..=4: four labels, not ten (which repeat as "1 2 2 2 3 4").
        assert_eq!(x_label_count(1.0, 4.0), 4);
        assert_eq!(x_label_count(0.0, 20_000.0), 10);
        assert_eq!(x_label_count(5.0, 5.0), 2);
    }

    #[test]
    fn the_legend_goes_where_the_curves_are_not() {
        let curve = |f: fn(f64) -> f64| Curve {
            label: "R-1 lr=0.001".into(),
            points: (0..100).map(|i| (i as f64, f(i as f64 / 99.0))).collect(),
            band: Vec::new(),
        };
        let pos = |c: &Curve| legend_corner(std::slice::from_ref(c), (0.0, 99.0), (0.0, 1.0));
        // An accuracy rising to 1: the top right is taken, the bottom right is free.
        assert!(matches!(
            pos(&curve(|t| t.sqrt())),
            SeriesLabelPosition::LowerRight
        ));
        // A loss falling from 1: the top right is free.
        assert!(matches!(
            pos(&curve(|t| 1.0 - t.sqrt())),
            SeriesLabelPosition::UpperRight
        ));
    }

    #[test]
    fn moving_average() {
        let p = vec![(1.0, 1.0), (2.0, 3.0), (3.0, f64::NAN), (4.0, 5.0)];
        assert_eq!(smooth(&p, 2), vec![(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]);
        assert_eq!(smooth(&p, 1).len(), 3);
        // A loss that falls from 1000 to 1e-8 stays positive and ends at 1e-8 (a running sum
        // alone kept the rounding error of the large values).
        let p: Vec<(f64, f64)> = (0..500)
            .map(|i| {
                (
                    i as f64,
                    if i < 50 {
                        1000.3 + i as f64 * 0.7
                    } else {
                        1e-8
                    },
                )
            })
            .collect();
        let s = smooth(&p, 50);
        assert!(s.iter().all(|&(_, y)| y > 0.0));
        let last = s.last().unwrap().1;
        assert!((last - 1e-8).abs() < 1e-14, "{last}");
    }
}
