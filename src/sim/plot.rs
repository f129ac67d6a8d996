//! `tp3-sim --svg`: line charts (reach, messages against the TTL, one line per
//! topology or rule) in one SVG file, drawn by `plotters` (axes, ticks, log scale and
//! legends are more code than we want to own). Only its SVG backend is built: text is
//! written as SVG `<text>` for the viewer's fonts, so no font library comes in.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// One chart's size in the file, in pixels.
const PANEL: (u32, u32) = (640, 480);

/// Charts a row holds before the next row starts.
const COLUMNS: usize = 2;

/// One line: its legend label and its points, in x order. Lines of one `colour` are
/// variants of one thing (a topology with and without full reach): the same colour,
/// one solid, the other `dashed` with hollow markers.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// An index into the palette.
    pub colour: usize,
    pub dashed: bool,
}

/// Strong colours that read on white, the most different first.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// A dashed line's dash and gap, in pixels.
const DASH: (u32, u32) = (7, 4);

/// One chart of lines sharing axes. `log_y`: a logarithmic y axis (messages per query
/// grow exponentially with the TTL); points with y ≤ 0 cannot be shown on it and are
/// left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Why a plot was not written.
#[derive(Debug)]
pub enum PlotError {
    /// The file could not be written.
    Write { path: PathBuf, source: io::Error },
    /// The plotting library refused to draw (not expected with finite numbers).
    Draw(String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Write { path, source } => write!(
                f,
                "cannot write {}: {}",
                path.display(),
                crate::os_error::plain(source)
            ),
            PlotError::Draw(what) => write!(f, "cannot draw the plot: {what}"),
        }
    }
}

impl std::error::Error for PlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlotError::Write { source, .. } => Some(source),
            PlotError::Draw(_) => None,
        }
    }
}

/// Writes `charts` to `path` as one SVG image, two charts a row, left to right.
pub fn write_svg(path: &Path, charts: &[Chart]) -> Result<(), PlotError> {
    let svg = render_svg(charts)?;
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The SVG text [`write_svg`] writes.
pub fn render_svg(charts: &[Chart]) -> Result<String, PlotError> {
    let columns = charts.len().clamp(1, COLUMNS);
    let rows = charts.len().div_ceil(columns).max(1);
    let size = (PANEL.0 * columns as u32, PANEL.1 * rows as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        for (chart, area) in charts.iter().zip(root.split_evenly((rows, columns))) {
            draw_chart(&area, chart)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Whether a point can be drawn on `chart`'s axes.
fn shown(chart: &Chart, &(x, y): &(f64, f64)) -> bool {
    x.is_finite() && y.is_finite() && (!chart.log_y || y > 0.0)
}

fn draw_chart(area: &DrawingArea<SVGBackend, Shift>, chart: &Chart) -> Result<(), PlotError> {
    let points: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| shown(chart, p))
        .collect();
    let bounds = |values: &mut dyn Iterator<Item = f64>| {
        values.fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
    };
    let (x_lo, x_hi) = bounds(&mut points.iter().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let (y_lo, y_hi) = bounds(&mut points.iter().map(|p| p.1)).unwrap_or((1.0, 1.0));
    let integer_x = points.iter().all(|p| p.0.fract() == 0.0);
    // A margin around the points so that no marker sits on an axis.
    let x_pad = if x_hi > x_lo {
        (x_hi - x_lo) * 0.04
    } else {
        1.0
    };
    let x_range = (x_lo - x_pad)..(x_hi + x_pad);
    let x_ticks = integer_ticks(x_lo, x_hi);
    let y_range = if chart.log_y {
        (y_lo / 2.0)..(y_hi * 2.0)
    } else {
        let lo = y_lo.min(0.0);
        let hi = if y_hi > lo { y_hi } else { lo + 1.0 };
        lo..(hi + (hi - lo) * 0.05)
    };

    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    let with_labels = chart.series.iter().any(|s| !s.label.is_empty());
    // The same drawing on each of the four kinds of axes.
    macro_rules! plot {
        ($x:expr, $y:expr) => {{
            let mut plot = builder.build_cartesian_2d($x, $y).map_err(draw_error)?;
            plot.configure_mesh()
                .x_desc(chart.x_label.as_str())
                .y_desc(chart.y_label.as_str())
                .x_label_formatter(&|x| number(*x))
                .y_label_formatter(&|y| number(*y))
                .light_line_style(BLACK.mix(0.03))
                .draw()
                .map_err(draw_error)?;
            for series in &chart.series {
                let colour = PALETTE[series.colour % PALETTE.len()];
                let style = colour.stroke_width(2);
                let line: Vec<(f64, f64)> = series
                    .points
                    .iter()
                    .copied()
                    .filter(|p| shown(chart, p))
                    .collect();
                if series.dashed {
                    plot.draw_series(DashedLineSeries::new(line.clone(), DASH.0, DASH.1, style))
                        .map_err(draw_error)?
                        .label(series.label.as_str())
                        .legend(move |(x, y)| {
                            DashedPathElement::new(vec![(x, y), (x + 20, y)], DASH.0, DASH.1, style)
                        });
                } else {
                    plot.draw_series(LineSeries::new(line.clone(), style))
                        .map_err(draw_error)?
                        .label(series.label.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                }
                let marker = if series.dashed {
                    style
                } else {
                    colour.filled()
                };
                plot.draw_series(line.iter().map(|&p| Circle::new(p, 3, marker)))
                    .map_err(draw_error)?;
            }
            if with_labels {
                plot.configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(draw_error)?;
            }
        }};
    }
    match (integer_x && !points.is_empty(), chart.log_y) {
        (true, true) => plot!(TickedAxis::new(x_range, x_ticks), y_range.log_scale()),
        (true, false) => plot!(TickedAxis::new(x_range, x_ticks), y_range),
        (false, true) => plot!(x_range, y_range.log_scale()),
        (false, false) => plot!(x_range, y_range),
    }
    Ok(())
}

/// A linear axis ticked at given values only: whole TTLs, never 2.5. (plotters'
/// own `with_key_points` axis cannot take a label formatter.)
struct TickedAxis {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl TickedAxis {
    fn new(range: Range<f64>, ticks: Vec<f64>) -> TickedAxis {
        TickedAxis {
            inner: range.into(),
            ticks,
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// Whole-number ticks from `lo` to `hi`: every one when there are 12 or fewer (TTLs),
/// otherwise a round step (2, 5, 10, 20, ...) that gives at most 12.
fn integer_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(0.0);
    let mut step = 1.0;
    'search: for scale in [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8] {
        for base in [1.0, 2.0, 5.0] {
            step = base * scale;
            if span / step <= 11.0 {
                break 'search;
            }
        }
    }
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|&t| t <= hi)
        .take(100)
        .collect()
}

/// A tick label: whole numbers plain up to a million, powers of ten and other large
/// numbers as `2e6`, fractions with at most 2 decimals.
fn number(v: f64) -> String {
    if v.abs() >= 1e6 {
        let text = format!("{v:.1e}");
        text.replace(".0e", "e")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_y: bool) -> Chart {
        Chart {
            title: "Messages per query".into(),
            x_label: "TTL".into(),
            y_label: "frames sent".into(),
            log_y,
            series: vec![
                Series {
                    label: "regular:1000:4".into(),
                    points: vec![(1.0, 4.0), (2.0, 16.0), (3.0, 52.0), (4.0, 160.0)],
                    colour: 0,
                    dashed: false,
                },
                Series {
                    label: "regular:1000:4 full reach".into(),
                    points: vec![(1.0, 0.0), (2.0, 30.0), (3.0, 400.0), (4.0, 3000.0)],
                    colour: 0,
                    dashed: true,
                },
            ],
        }
    }

    /// Polylines of more than three points: the solid series' lines (the test's have
    /// four; a dash that turns a corner has three).
    fn series_lines(svg: &str) -> usize {
        svg.lines()
            .filter(|l| l.contains("<polyline"))
            .filter(|l| {
                l.split("points=\"")
                    .nth(1)
                    .is_some_and(|p| p.split(' ').filter(|c| c.contains(',')).count() > 3)
            })
            .count()
    }

    #[test]
    fn writes_an_svg_with_the_labels_and_a_line_per_series() {
        let path = std::env::temp_dir().join(format!("tp3kv-plot-{}.svg", std::process::id()));
        let mut reach = chart(false);
        reach.title = "Servents reached".into();
        write_svg(&path, &[reach, chart(true)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "Servents reached",
            "Messages per query",
            "TTL",
            "frames sent",
            "regular:1000:4",
            "regular:1000:4 full reach",
        ] {
            assert!(svg.contains(text), "no {text:?} in the SVG");
        }
        // One solid series on each of two charts (the axes' and legends' lines are 2
        // points); the other, dashed, is drawn in dashes of its colour, the first's.
        assert_eq!(series_lines(&svg), 2, "{svg}");
        let in_colour = svg
            .lines()
            .filter(|l| l.contains("<polyline") && l.contains("stroke=\"#1F77B4\""))
            .count();
        assert!(
            in_colour > 2 + 20,
            "{in_colour} polylines in the first colour"
        );
        // Markers: a circle per point shown (the log chart leaves out y = 0).
        assert_eq!(svg.matches("<circle").count(), 8 + 7);
    }

    #[test]
    fn an_unwritable_path_is_a_plot_error() {
        let path = Path::new("/nonexistent-dir/plot.svg");
        let error = write_svg(path, &[chart(false)]).unwrap_err();
        assert!(matches!(error, PlotError::Write { .. }));
        assert_eq!(
            error.to_string(),
            "cannot write /nonexistent-dir/plot.svg: no such file or directory"
        );
    }

    #[test]
    fn empty_and_flat_charts_still_draw() {
        let mut empty = chart(true);
        empty.series.clear();
        let mut flat = chart(false);
        flat.series.truncate(1);
        flat.series[0].points = vec![(3.0, 7.0)];
        let svg = render_svg(&[empty, flat]).unwrap();
        assert_eq!(series_lines(&svg), 0);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(render_svg(&[]).unwrap().contains("<svg"));
    }

    #[test]
    fn ticks_and_numbers() {
        assert_eq!(integer_ticks(1.0, 6.0), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(
            integer_ticks(0.0, 40.0),
            (0..=8).map(|i| i as f64 * 5.0).collect::<Vec<_>>()
        );
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1e6), "1e6");
        assert_eq!(number(2.5e7), "2.5e7");
    }
}
