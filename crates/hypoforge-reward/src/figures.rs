//! Figures of the reward analyses, each written as SVG (for the paper) and PNG (for a quick look).
//!
//! - [`win_rate_scatter`]: B-WR against BSOTA-WR per component (the paper's Figure 3).
//! - [`efficiency_curves`]: how fast an order finds the true top set (Figure 4).
//! - [`top_shapes`]: the shapes of the best activations (Figure 5).
//! - [`similarity_heatmap`]: behavioural similarity between hypotheses.
//!
//! All text uses the family "sans-serif", backed by an embedded DejaVu Sans so that the PNGs have
//! their text on machines without any system font.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Why a figure could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("cannot draw this figure: {0}")]
    Input(String),
    #[error("drawing the figure failed: {0}")]
    Draw(String),
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the embedded font could not be loaded")]
    Font,
}

/// One component in the B-WR vs BSOTA-WR scatter (the paper's Figure 3).
#[derive(Clone, Debug)]
pub struct WinRatePoint {
    pub name: String,
    pub b_wr: f64,
    pub bsota_wr: f64,
    pub baseline: bool,
}

/// One curve of an efficiency plot (the paper's Figure 4): x = share evaluated, y = share of the
/// true top set found, both in `[0, 1]`.
#[derive(Clone, Debug)]
pub struct CurveSeries {
    pub label: String,
    pub evaluated: Vec<f64>,
    pub found: Vec<f64>,
}

/// One panel of the top-activations figure (the paper's Figure 5): f over x.
#[derive(Clone, Debug)]
pub struct ShapePanel {
    pub name: String,
    pub x: Vec<f64>,
    pub f: Vec<f64>,
    pub bsota_wr: f64,
    pub n_score: f64,
}

/// Draws B-WR against BSOTA-WR, hypotheses as dots and baselines as labelled markers, and
/// writes `<stem>.svg` and `<stem>.png`.
pub fn win_rate_scatter(
    title: &str,
    points: &[WinRatePoint],
    stem: &Path,
) -> Result<[PathBuf; 2], FigureError> {
    if points.is_empty() {
        return Err(FigureError::Input(
            "the win-rate scatter has no points".into(),
        ));
    }
    render(&Scatter { title, points }, stem)
}

/// Draws one efficiency curve per series, with a legend, and writes `<stem>.svg` and `<stem>.png`.
pub fn efficiency_curves(
    title: &str,
    series: &[CurveSeries],
    stem: &Path,
) -> Result<[PathBuf; 2], FigureError> {
    if series.is_empty() {
        return Err(FigureError::Input(
            "the efficiency plot has no curves".into(),
        ));
    }
    if let Some(s) = series.iter().find(|s| s.evaluated.len() != s.found.len()) {
        return Err(FigureError::Input(format!(
            "curve {:?} has {} x values but {} y values",
            s.label,
            s.evaluated.len(),
            s.found.len()
        )));
    }
    render(&Curves { title, series }, stem)
}

/// Draws up to 12 function shapes in a 4×3 grid and writes `<stem>.svg` and `<stem>.png`.
pub fn top_shapes(
    title: &str,
    panels: &[ShapePanel],
    stem: &Path,
) -> Result<[PathBuf; 2], FigureError> {
    if panels.is_empty() {
        return Err(FigureError::Input("the shapes figure has no panels".into()));
    }
    if panels.len() > SHAPE_ROWS * SHAPE_COLS {
        return Err(FigureError::Input(format!(
            "{} panels do not fit the {SHAPE_COLS}×{SHAPE_ROWS} grid",
            panels.len()
        )));
    }
    if let Some(p) = panels.iter().find(|p| p.x.len() != p.f.len()) {
        return Err(FigureError::Input(format!(
            "panel {:?} has {} x values but {} f values",
            p.name,
            p.x.len(),
            p.f.len()
        )));
    }
    render(&Shapes { title, panels }, stem)
}

/// Draws an n×n similarity matrix (white 0 to dark blue 1, NaN grey) and writes `<stem>.svg`
/// and `<stem>.png`.
pub fn similarity_heatmap(
    title: &str,
    names: &[String],
    similarity: &[Vec<f64>],
    stem: &Path,
) -> Result<[PathBuf; 2], FigureError> {
    let n = names.len();
    if n == 0 {
        return Err(FigureError::Input(
            "the similarity heatmap has no names".into(),
        ));
    }
    if similarity.len() != n {
        return Err(FigureError::Input(format!(
            "{n} names but {} similarity rows",
            similarity.len()
        )));
    }
    if let Some((i, row)) = similarity.iter().enumerate().find(|(_, r)| r.len() != n) {
        return Err(FigureError::Input(format!(
            "similarity row {i} has {} values, the matrix must be {n}×{n}",
            row.len()
        )));
    }
    render(
        &Heatmap {
            title,
            names,
            similarity,
        },
        stem,
    )
}

const FAMILY: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

const SHAPE_ROWS: usize = 3;
const SHAPE_COLS: usize = 4;

const HYPOTHESIS: RGBColor = RGBColor(31, 119, 180);
const BASELINE: RGBColor = RGBColor(255, 127, 14);
const GUIDE: RGBColor = RGBColor(150, 150, 150);
const GRID: RGBColor = RGBColor(225, 225, 225);
const UNDEFINED: RGBColor = RGBColor(170, 170, 170);
const HEAT_LOW: RGBColor = RGBColor(255, 255, 255);
const HEAT_HIGH: RGBColor = RGBColor(8, 48, 107);
/// Tableau 10: distinct at a glance, and the colors readers know from matplotlib.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Registers the embedded font once per process; plotters' default labels also ask for
/// "sans-serif", so this one registration covers every text on the figures.
fn ensure_font() -> Result<(), FigureError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok { Ok(()) } else { Err(FigureError::Font) }
}

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font())
}

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> FigureError {
    FigureError::Draw(e.to_string())
}

/// A figure that can be drawn on any backend, so that the SVG and the PNG come from one code path.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), FigureError>;
}

fn paint<DB: DrawingBackend>(
    figure: &impl Figure,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), FigureError> {
    root.fill(&WHITE).map_err(draw_err)?;
    figure.draw(root)?;
    // Presenting explicitly surfaces write errors that a drop would swallow.
    root.present().map_err(draw_err)
}

/// Appends rather than replaces the extension: a stem like `fig.v2` must keep its `.v2`.
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

fn render(figure: &impl Figure, stem: &Path) -> Result<[PathBuf; 2], FigureError> {
    if stem.file_name().is_none() {
        return Err(FigureError::Input(format!(
            "{:?} is not a file stem",
            stem.display()
        )));
    }
    ensure_font()?;
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| FigureError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let size = figure.size();

    // The SVG is built in memory so that a failed write is reported as an I/O error with its path.
    let svg_path = with_suffix(stem, "svg");
    let mut svg = String::new();
    paint(
        figure,
        &SVGBackend::with_string(&mut svg, size).into_drawing_area(),
    )?;
    fs::write(&svg_path, svg).map_err(|source| FigureError::Io {
        path: svg_path.clone(),
        source,
    })?;

    let png_path = with_suffix(stem, "png");
    paint(
        figure,
        &BitMapBackend::new(&png_path, size).into_drawing_area(),
    )?;
    Ok([svg_path, png_path])
}

/// Beyond this, values would map past i32 pixels, which overflows inside plotters.
const LIMIT: f64 = 1e12;

fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() <= LIMIT
}

/// A plotting range over the plottable values, never empty, never infinitely wide: plotters'
/// tick search divides by the width and loops forever on an infinite one.
fn span(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|&v| plottable(v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return -1.0..1.0;
    }
    let min_width = 1e-6 * lo.abs().max(hi.abs()).max(1.0);
    if hi - lo < min_width {
        let mid = 0.5 * (lo + hi);
        return mid - min_width.max(0.5)..mid + min_width.max(0.5);
    }
    let pad = 0.04 * (hi - lo);
    lo - pad..hi + pad
}

/// Keeps labels from running into their neighbours; counts characters, not bytes.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

struct Scatter<'a> {
    title: &'a str,
    points: &'a [WinRatePoint],
}

impl Figure for Scatter<'_> {
    fn size(&self) -> (u32, u32) {
        (800, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), FigureError> {
        let finite = || {
            self.points
                .iter()
                .filter(|p| p.b_wr.is_finite() && p.bsota_wr.is_finite())
        };
        // BSOTA-WR sits far below B-WR in practice; a [0,1] y axis would flatten it to a line.
        let top = finite().map(|p| p.bsota_wr).fold(0.0, f64::max);
        let y_max = (top.max(0.05) * 1.1).min(1.0);
        // Out-of-range win rates are upstream bugs; pinning them to the frame keeps them visible.
        let at = |p: &WinRatePoint| (p.b_wr.clamp(0.0, 1.0), p.bsota_wr.clamp(0.0, y_max));

        let mut chart = ChartBuilder::on(root)
            .caption(self.title, font(24.0))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..1.0, 0.0..y_max)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("B-WR")
            .y_desc("BSOTA-WR")
            .axis_desc_style(font(17.0))
            .label_style(font(13.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()
            .map_err(draw_err)?;

        // Beating the best baseline implies beating the baselines, so every point lies on or
        // below y = x; the line shows how far below.
        let diagonal = y_max.min(1.0);
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (diagonal, diagonal)],
                GUIDE.stroke_width(1),
            ))
            .map_err(draw_err)?
            .label("y = x")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GUIDE.stroke_width(1)));

        let hypotheses = finite().filter(|p| !p.baseline).count();
        chart
            .draw_series(
                finite()
                    .filter(|p| !p.baseline)
                    .map(|p| Circle::new(at(p), 2, HYPOTHESIS.filled())),
            )
            .map_err(draw_err)?
            .label(format!("hypotheses ({hypotheses})"))
            .legend(|(x, y)| Circle::new((x + 10, y), 3, HYPOTHESIS.filled()));

        chart
            .draw_series(finite().filter(|p| p.baseline).map(|p| {
                // Labels near the right edge go to the left of their marker to stay on the canvas.
                let (offset, anchor) = if p.b_wr > 0.75 {
                    ((-9, -18), HPos::Right)
                } else {
                    ((9, -18), HPos::Left)
                };
                EmptyElement::at(at(p))
                    + Circle::new((0, 0), 6, BASELINE.filled())
                    + Circle::new((0, 0), 6, BLACK.stroke_width(1))
                    + Text::new(
                        p.name.clone(),
                        offset,
                        font(13.0).pos(Pos::new(anchor, VPos::Top)),
                    )
            }))
            .map_err(draw_err)?
            .label("baselines")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BASELINE.filled()));

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(font(13.0))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)
    }
}

struct Curves<'a> {
    title: &'a str,
    series: &'a [CurveSeries],
}

impl Figure for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (800, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), FigureError> {
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, font(24.0))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("share of hypotheses evaluated")
            .y_desc("share of the true top 10% found")
            .axis_desc_style(font(17.0))
            .label_style(font(13.0))
            .bold_line_style(GRID)
            .light_line_style(WHITE)
            .draw()
            .map_err(draw_err)?;

        for (s, color) in self.series.iter().zip(PALETTE.iter().copied().cycle()) {
            let points: Vec<(f64, f64)> = s
                .evaluated
                .iter()
                .zip(&s.found)
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(x, y)| (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0)))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(draw_err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }

        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(font(14.0))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)
    }
}

struct Shapes<'a> {
    title: &'a str,
    panels: &'a [ShapePanel],
}

impl Figure for Shapes<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 800)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), FigureError> {
        // `titled` pads by at most 5 px, which puts a large title against the top edge.
        let body = root
            .margin(10, 5, 5, 5)
            .titled(self.title, font(24.0))
            .map_err(draw_err)?;
        let cells = body.split_evenly((SHAPE_ROWS, SHAPE_COLS));
        for (panel, area) in self.panels.iter().zip(&cells) {
            draw_shape(panel, area)?;
        }
        Ok(())
    }
}

fn draw_shape<DB: DrawingBackend>(
    panel: &ShapePanel,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), FigureError> {
    // Activations can explode at the edges of the grid; the interesting part is near zero. The
    // clip is wide enough that no ordinary shape (x² on [-4, 4] included) looks saturated.
    const Y_CLIP: (f64, f64) = (-20.0, 20.0);
    let finite = |&(x, y): &(f64, f64)| plottable(x) && y.is_finite();
    let pairs: Vec<(f64, f64)> = panel
        .x
        .iter()
        .copied()
        .zip(panel.f.iter().copied())
        .collect();
    let xs = span(pairs.iter().filter(|p| finite(p)).map(|p| p.0));
    let ys = span(
        pairs
            .iter()
            .filter(|p| finite(p))
            .map(|p| p.1.clamp(Y_CLIP.0, Y_CLIP.1)),
    );

    let area = area
        .titled(&truncate(&panel.name, 34), font(15.0))
        .map_err(draw_err)?;
    // A hypothesis without a novelty score passes NaN; "n/a" reads better than "NaN".
    let two = |v: f64| {
        if v.is_finite() {
            format!("{v:.2}")
        } else {
            "n/a".to_owned()
        }
    };
    let stats = format!(
        "BSOTA-WR {} · N {}",
        two(panel.bsota_wr),
        two(panel.n_score)
    );
    let mut chart = ChartBuilder::on(&area)
        .caption(stats, font(12.0).color(&GUIDE))
        .margin(6)
        .x_label_area_size(20)
        .y_label_area_size(32)
        .build_cartesian_2d(xs.clone(), ys.clone())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&|v| tick(*v, &xs))
        .y_label_formatter(&|v| tick(*v, &ys))
        .label_style(font(10.0))
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()
        .map_err(draw_err)?;

    if ys.start < 0.0 && ys.end > 0.0 {
        chart
            .draw_series(LineSeries::new(
                [(xs.start, 0.0), (xs.end, 0.0)],
                GUIDE.stroke_width(1),
            ))
            .map_err(draw_err)?;
    }
    // An unplottable value breaks the curve instead of being bridged by a straight line.
    let clip = |&(x, y): &(f64, f64)| (x.clamp(xs.start, xs.end), y.clamp(ys.start, ys.end));
    for run in pairs.split(|p| !finite(p)).filter(|r| !r.is_empty()) {
        if let [single] = run {
            chart
                .draw_series([Circle::new(clip(single), 2, HYPOTHESIS.filled())])
                .map_err(draw_err)?;
        } else {
            chart
                .draw_series(LineSeries::new(
                    run.iter().map(clip),
                    HYPOTHESIS.stroke_width(2),
                ))
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

/// A tick label without the "-0.0" that rounding noise around zero would otherwise print.
fn tick(v: f64, range: &Range<f64>) -> String {
    let v = if v.abs() < 1e-9 * (range.end - range.start) {
        0.0
    } else {
        v
    };
    RangedCoordf64::format(&v)
}

struct Heatmap<'a> {
    title: &'a str,
    names: &'a [String],
    similarity: &'a [Vec<f64>],
}

const HEAT_LEFT: i32 = 140;
const HEAT_TOP: i32 = 60;
const HEAT_SIDE: i32 = 700;
const HEAT_RIGHT: i32 = 120;
const HEAT_BOTTOM: i32 = 170;

fn heat_color(v: f64) -> RGBColor {
    if v.is_nan() {
        return UNDEFINED;
    }
    let t = v.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (f64::from(a) + t * (f64::from(b) - f64::from(a))).round() as u8;
    RGBColor(
        mix(HEAT_LOW.0, HEAT_HIGH.0),
        mix(HEAT_LOW.1, HEAT_HIGH.1),
        mix(HEAT_LOW.2, HEAT_HIGH.2),
    )
}

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        (
            (HEAT_LEFT + HEAT_SIDE + HEAT_RIGHT).unsigned_abs(),
            (HEAT_TOP + HEAT_SIDE + HEAT_BOTTOM).unsigned_abs(),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), FigureError> {
        let (width, height) = self.size();
        let n = self.names.len();
        // Integer cell edges tile the square exactly, without gaps between cells.
        let edge = |k: usize| (k as f64 * f64::from(HEAT_SIDE) / n as f64).round() as i32;
        let center = |k: usize| (edge(k) + edge(k + 1)) / 2;

        root.draw(&Text::new(
            self.title,
            ((width / 2) as i32, 15),
            font(24.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(draw_err)?;

        for (i, row) in self.similarity.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                root.draw(&Rectangle::new(
                    [
                        (HEAT_LEFT + edge(j), HEAT_TOP + edge(i)),
                        (HEAT_LEFT + edge(j + 1), HEAT_TOP + edge(i + 1)),
                    ],
                    heat_color(v).filled(),
                ))
                .map_err(draw_err)?;
            }
        }
        root.draw(&Rectangle::new(
            [
                (HEAT_LEFT, HEAT_TOP),
                (HEAT_LEFT + HEAT_SIDE, HEAT_TOP + HEAT_SIDE),
            ],
            GUIDE.stroke_width(1),
        ))
        .map_err(draw_err)?;

        // With many hypotheses the cells get thinner than a line of text: shrink the names down
        // to a legible minimum, then label only every k-th row and column.
        let cell = f64::from(HEAT_SIDE) / n as f64;
        let size = (cell * 0.8).clamp(8.0, 13.0);
        let step = ((size + 2.0) / cell).ceil().max(1.0) as usize;
        let row_style = font(size).pos(Pos::new(HPos::Right, VPos::Center));
        let col_style = font(size)
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Right, VPos::Center));
        for (k, name) in self.names.iter().enumerate().step_by(step) {
            let label = truncate(name, 14);
            root.draw(&Text::new(
                label.clone(),
                (HEAT_LEFT - 6, HEAT_TOP + center(k)),
                row_style.clone(),
            ))
            .map_err(draw_err)?;
            root.draw(&Text::new(
                label,
                (HEAT_LEFT + center(k), HEAT_TOP + HEAT_SIDE + 6),
                col_style.clone(),
            ))
            .map_err(draw_err)?;
        }

        self.draw_scale(root)?;

        let undefined = self.similarity.iter().flatten().any(|v| v.is_nan());
        let caption = if undefined {
            "similarity = 1 − behavioural distance (grey: undefined)"
        } else {
            "similarity = 1 − behavioural distance"
        };
        root.draw(&Text::new(
            caption,
            ((width / 2) as i32, height as i32 - 12),
            font(15.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
        ))
        .map_err(draw_err)
    }
}

impl Heatmap<'_> {
    /// A vertical bar from 0 (bottom) to 1 (top) right of the matrix.
    fn draw_scale<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), FigureError> {
        const BANDS: i32 = 100;
        let x0 = HEAT_LEFT + HEAT_SIDE + 30;
        let x1 = x0 + 20;
        let (top, bottom) = (HEAT_TOP + HEAT_SIDE / 4, HEAT_TOP + 3 * HEAT_SIDE / 4);
        let y_at = |k: i32| bottom - (bottom - top) * k / BANDS;
        for k in 0..BANDS {
            let v = (f64::from(k) + 0.5) / f64::from(BANDS);
            root.draw(&Rectangle::new(
                [(x0, y_at(k + 1)), (x1, y_at(k))],
                heat_color(v).filled(),
            ))
            .map_err(draw_err)?;
        }
        root.draw(&Rectangle::new(
            [(x0, top), (x1, bottom)],
            GUIDE.stroke_width(1),
        ))
        .map_err(draw_err)?;
        let tick = font(12.0).pos(Pos::new(HPos::Left, VPos::Center));
        for (label, k) in [("0", 0), ("0.5", BANDS / 2), ("1", BANDS)] {
            root.draw(&Text::new(label, (x1 + 6, y_at(k)), tick.clone()))
                .map_err(draw_err)?;
        }
        root.draw(&Text::new(
            "similarity",
            ((x0 + x1) / 2, top - 10),
            font(12.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
        ))
        .map_err(draw_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert!(bytes.len() > 24, "PNG too short");
        assert_eq!(bytes[..8], PNG_SIGNATURE, "not a PNG");
        assert_eq!(&bytes[12..16], b"IHDR", "first chunk is not IHDR");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    /// Checks both files exist where promised, are an SVG and a PNG of the intended size, and
    /// that the SVG holds each expected text.
    fn check_outputs(paths: &[PathBuf; 2], stem: &Path, size: (u32, u32), texts: &[&str]) {
        assert_eq!(paths[0], with_suffix(stem, "svg"));
        assert_eq!(paths[1], with_suffix(stem, "png"));
        let svg = fs::read_to_string(&paths[0]).expect("read svg");
        assert!(svg.starts_with("<svg"), "SVG starts with {:?}", &svg[..20]);
        for text in texts {
            assert!(svg.contains(text), "SVG lacks {text:?}");
        }
        let png = fs::read(&paths[1]).expect("read png");
        assert_eq!(png_size(&png), size);
    }

    /// Renders through the same code as the PNG, into memory, so tests can look at pixels.
    fn rgb(figure: &impl Figure) -> (Vec<u8>, (u32, u32)) {
        ensure_font().expect("font");
        let size = figure.size();
        let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
        paint(
            figure,
            &BitMapBackend::with_buffer(&mut buf, size).into_drawing_area(),
        )
        .expect("paint");
        (buf, size)
    }

    fn dark_pixels(buf: &[u8], width: u32, xs: Range<u32>, ys: Range<u32>) -> usize {
        ys.flat_map(|y| xs.clone().map(move |x| ((y * width + x) * 3) as usize))
            .filter(|&i| buf[i..i + 3].iter().all(|&c| c < 100))
            .count()
    }

    fn points() -> Vec<WinRatePoint> {
        let mut points: Vec<WinRatePoint> = (0..40)
            .map(|i| {
                let b = f64::from(i) / 40.0;
                WinRatePoint {
                    name: format!("h{i}"),
                    b_wr: b,
                    bsota_wr: b * b * 0.3,
                    baseline: false,
                }
            })
            .collect();
        points.push(WinRatePoint {
            name: "relu".into(),
            b_wr: 0.5,
            bsota_wr: 0.1,
            baseline: true,
        });
        points.push(WinRatePoint {
            name: "gelu".into(),
            b_wr: 0.9,
            bsota_wr: 0.2,
            baseline: true,
        });
        points
    }

    fn curves() -> Vec<CurveSeries> {
        let grid: Vec<f64> = (0..=20).map(|i| f64::from(i) / 20.0).collect();
        vec![
            CurveSeries {
                label: "reward model (AUC 0.71)".into(),
                found: grid.iter().map(|x| x.sqrt()).collect(),
                evaluated: grid.clone(),
            },
            CurveSeries {
                label: "random (AUC 0.50)".into(),
                found: grid.clone(),
                evaluated: grid.clone(),
            },
            CurveSeries {
                label: "oracle (AUC 0.95)".into(),
                found: grid.iter().map(|x| (x * 10.0).min(1.0)).collect(),
                evaluated: grid,
            },
        ]
    }

    fn panels(n: usize) -> Vec<ShapePanel> {
        let x: Vec<f64> = (0..=100).map(|i| -5.0 + f64::from(i) * 0.1).collect();
        (0..n)
            .map(|k| ShapePanel {
                name: format!("act_{k}"),
                f: x.iter().map(|&v| v * (k as f64 * 0.3 * v).tanh()).collect(),
                x: x.clone(),
                bsota_wr: 0.31,
                n_score: 0.125,
            })
            .collect()
    }

    fn matrix(n: usize) -> (Vec<String>, Vec<Vec<f64>>) {
        let names = (0..n).map(|i| format!("hypothesis_number_{i}")).collect();
        let sim = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| 1.0 / (1.0 + (i as f64 - j as f64).abs()))
                    .collect()
            })
            .collect();
        (names, sim)
    }

    #[test]
    fn scatter_writes_svg_and_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("fig3");
        let paths = win_rate_scatter("Activations: win rates", &points(), &stem).expect("draw");
        check_outputs(
            &paths,
            &stem,
            (800, 600),
            &["Activations: win rates", "gelu", "relu", "B-WR", "BSOTA-WR"],
        );
    }

    #[test]
    fn curves_write_svg_and_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("fig4.v2");
        let paths = efficiency_curves("Efficiency", &curves(), &stem).expect("draw");
        check_outputs(
            &paths,
            &stem,
            (800, 600),
            &[
                "Efficiency",
                "reward model (AUC 0.71)",
                "oracle (AUC 0.95)",
                "share of hypotheses evaluated",
                "share of the true top 10% found",
            ],
        );
    }

    #[test]
    fn shapes_write_svg_and_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("nested").join("fig5");
        let paths = top_shapes("Top activations", &panels(7), &stem).expect("draw");
        check_outputs(
            &paths,
            &stem,
            (1200, 800),
            &["Top activations", "act_6", "BSOTA-WR 0.31 · N 0.12"],
        );
    }

    #[test]
    fn heatmap_writes_svg_and_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("heat");
        let (names, sim) = matrix(12);
        let paths =
            similarity_heatmap("Behavioural similarity", &names, &sim, &stem).expect("draw");
        check_outputs(
            &paths,
            &stem,
            (960, 930),
            &[
                "Behavioural similarity",
                "similarity = 1 − behavioural distance",
                "hypothesis_nu…",
            ],
        );
        assert!(
            !fs::read_to_string(&paths[0])
                .expect("svg")
                .contains("hypothesis_number_1")
        );
    }

    #[test]
    fn png_title_is_drawn() {
        let pts = points();
        let titled = Scatter {
            title: "A title",
            points: &pts,
        };
        let untitled = Scatter {
            title: "",
            points: &pts,
        };
        let (with, (w, _)) = rgb(&titled);
        let (without, _) = rgb(&untitled);
        // The caption sits between the 15 px margin and the plot, which starts near row 44.
        assert!(dark_pixels(&with, w, 0..w, 0..40) > 50);
        assert_eq!(dark_pixels(&without, w, 0..w, 0..40), 0);

        // The written PNG carries the same difference.
        let dir = tempfile::tempdir().expect("tempdir");
        let a = win_rate_scatter("A title", &pts, &dir.path().join("a")).expect("draw");
        let b = win_rate_scatter("", &pts, &dir.path().join("b")).expect("draw");
        assert_ne!(fs::read(&a[1]).expect("png"), fs::read(&b[1]).expect("png"));
    }

    #[test]
    fn png_axis_labels_are_drawn() {
        let (names, sim) = matrix(5);
        let heat = Heatmap {
            title: "",
            names: &names,
            similarity: &sim,
        };
        let (buf, (w, h)) = rgb(&heat);
        let left = HEAT_LEFT.unsigned_abs();
        let top = HEAT_TOP.unsigned_abs();
        let side = HEAT_SIDE.unsigned_abs();
        // Row names left of the matrix, column names below it, caption at the bottom.
        assert!(dark_pixels(&buf, w, 0..left - 2, top..top + side) > 50);
        assert!(dark_pixels(&buf, w, left..left + side, top + side + 2..h - 40) > 50);
        assert!(dark_pixels(&buf, w, 0..w, h - 40..h) > 50);
        assert_eq!(dark_pixels(&buf, w, 0..w, 0..top - 5), 0);
    }

    #[test]
    fn heatmap_colors_run_white_to_blue_and_nan_grey() {
        assert_eq!(heat_color(0.0), HEAT_LOW);
        assert_eq!(heat_color(-3.0), HEAT_LOW);
        assert_eq!(heat_color(1.0), HEAT_HIGH);
        assert_eq!(heat_color(7.0), HEAT_HIGH);
        assert_eq!(heat_color(f64::NAN), UNDEFINED);
        let mid = heat_color(0.5);
        assert!(mid.2 < HEAT_LOW.2 && mid.2 > HEAT_HIGH.2);
    }

    #[test]
    fn bad_input_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("bad");
        let input = |r: Result<[PathBuf; 2], FigureError>| matches!(r, Err(FigureError::Input(_)));

        let (names, mut sim) = matrix(4);
        assert!(input(similarity_heatmap("t", &names, &sim[..3], &stem)));
        sim[2].pop();
        assert!(input(similarity_heatmap("t", &names, &sim, &stem)));
        assert!(input(similarity_heatmap("t", &[], &[], &stem)));

        assert!(input(top_shapes("t", &panels(13), &stem)));
        assert!(input(top_shapes("t", &[], &stem)));
        let mut short = panels(2);
        short[1].f.pop();
        assert!(input(top_shapes("t", &short, &stem)));

        assert!(input(efficiency_curves("t", &[], &stem)));
        let mut uneven = curves();
        uneven[0].found.push(1.0);
        assert!(input(efficiency_curves("t", &uneven, &stem)));

        assert!(input(win_rate_scatter("t", &[], &stem)));
        assert!(input(win_rate_scatter("t", &points(), Path::new(""))));
        assert!(!with_suffix(&stem, "svg").exists());
    }

    #[test]
    fn nan_and_wild_values_still_draw() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = |s: &str| dir.path().join(s);

        let mut pts = points();
        pts[3].b_wr = f64::NAN;
        pts[4].bsota_wr = f64::INFINITY;
        pts[5].bsota_wr = 3.0;
        win_rate_scatter("nan", &pts, &stem("scatter")).expect("scatter");
        let all_nan = [WinRatePoint {
            name: "x".into(),
            b_wr: f64::NAN,
            bsota_wr: f64::NAN,
            baseline: true,
        }];
        win_rate_scatter("nan", &all_nan, &stem("scatter_nan")).expect("all-NaN scatter");

        let mut cs = curves();
        cs[0].found[3] = f64::NAN;
        cs[1].evaluated = vec![f64::NAN; cs[1].found.len()];
        cs.push(CurveSeries {
            label: "empty".into(),
            evaluated: vec![],
            found: vec![],
        });
        efficiency_curves("nan", &cs, &stem("curves")).expect("curves");

        let mut ps = panels(4);
        ps[0].f[10] = f64::NAN;
        ps[1].f = vec![f64::NAN; ps[1].x.len()];
        ps[2].f = ps[2].x.iter().map(|x| x.exp() * 1e300).collect();
        ps[3].x = vec![1e308, -1e308, f64::INFINITY];
        ps[3].f = vec![1.0, 2.0, 3.0];
        ps[0].n_score = f64::NAN;
        let paths = top_shapes("nan", &ps, &stem("shapes")).expect("shapes");
        let svg = fs::read_to_string(&paths[0]).expect("svg");
        assert!(svg.contains("BSOTA-WR 0.31 · N n/a"));
        let constant = [ShapePanel {
            name: "flat".into(),
            x: vec![2.0; 5],
            f: vec![1.0; 5],
            bsota_wr: 0.0,
            n_score: 0.0,
        }];
        top_shapes("flat", &constant, &stem("flat")).expect("flat");

        let (names, mut sim) = matrix(3);
        sim[0][1] = f64::NAN;
        sim[1][2] = -1.0;
        sim[2][0] = f64::INFINITY;
        let paths = similarity_heatmap("nan", &names, &sim, &stem("heat")).expect("heat");
        let svg = fs::read_to_string(&paths[0]).expect("svg");
        assert!(svg.contains("grey: undefined"));
    }

    #[test]
    fn span_is_finite_and_nonempty() {
        for values in [
            vec![],
            vec![f64::NAN],
            vec![3.0, 3.0],
            vec![1e300],
            vec![-1e308, 1e308],
            vec![0.0, 1.0],
        ] {
            let r = span(values.iter().copied());
            assert!(
                r.start.is_finite() && r.end.is_finite(),
                "{values:?} -> {r:?}"
            );
            assert!(
                r.end - r.start > 0.0 && (r.end - r.start).is_finite(),
                "{values:?} -> {r:?}"
            );
        }
        let r = span([0.0, 1.0].into_iter());
        assert!(r.start < 0.0 && r.end > 1.0 && r.end < 1.1);
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("short", 14), "short");
        assert_eq!(truncate("ääääääääääääääää", 14).chars().count(), 14);
        assert!(truncate("hypothesis_number_1", 14).ends_with('…'));
    }
}
