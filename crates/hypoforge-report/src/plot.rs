//! The activation shape plot, drawn by hand as SVG: two polylines, a frame and tick labels need
//! no plotting library, and the output is small and stable across versions.

use std::fmt::Write as _;

use crate::Shape;
use crate::html::{escape, fixed};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;
const F_COLOR: &str = "#1f5fbf";
const DF_COLOR: &str = "#c0392b";

/// A linear axis whose ends are rounded out to whole ticks, so that the labels are short numbers.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    /// `min` and `max` must be finite; a zero span (a constant function) is widened so that the
    /// line sits mid-plot instead of dividing by zero.
    fn new(min: f64, max: f64) -> Self {
        let (min, max) = if max - min > f64::EPSILON * max.abs().max(min.abs()).max(1.0) {
            (min, max)
        } else {
            let pad = (min.abs() * 0.5).max(1.0);
            (min - pad, max + pad)
        };
        let step = nice_step((max - min) / 6.0);
        let lo = (min / step).floor() * step;
        let hi = (max / step).ceil() * step;
        if step.is_finite() && step > 0.0 && lo.is_finite() && hi.is_finite() && hi > lo {
            Self { lo, hi, step }
        } else {
            // Spans near f64::MAX overflow the rounding; an unrounded axis still draws the data.
            Self {
                lo: min,
                hi: max,
                step: (max / 4.0 - min / 4.0).max(f64::MIN_POSITIVE),
            }
        }
    }

    fn ticks(&self) -> Vec<f64> {
        // A step from `nice_step` gives at most about a dozen ticks; the cap guards the fallback.
        (0..=24)
            .map(|i| self.lo + f64::from(i) * self.step)
            .take_while(|t| t.is_finite() && *t <= self.hi + self.step * 1e-9)
            .collect()
    }

    /// Places of the labels: enough to tell neighbouring ticks apart, no more.
    fn decimals(&self) -> usize {
        let mut d = -self.step.log10().floor();
        if (self.step / 10f64.powf(-d) - 2.5).abs() < 1e-9 {
            d += 1.0;
        }
        // The clamp makes the cast exact.
        d.clamp(0.0, 12.0) as usize
    }

    fn label(&self, t: f64) -> String {
        let m = self.lo.abs().max(self.hi.abs());
        if (1e-4..1e6).contains(&m) {
            fixed(t, self.decimals())
        } else if t == 0.0 {
            "0".to_owned()
        } else {
            format!("{t:.1e}")
        }
    }

    /// Maps a value to pixels between `from` and `to`.
    fn map(&self, v: f64, from: f64, to: f64) -> f64 {
        from + (v - self.lo) / (self.hi - self.lo) * (to - from)
    }
}

/// The smallest of 1, 2, 2.5, 5 × 10ᵏ at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0]
        .into_iter()
        .find(|n| norm <= *n + 1e-9)
        .unwrap_or(10.0);
    nice * magnitude
}

/// The points of one curve split into runs of finite values: a gap (a pole, an overflow) breaks
/// the line instead of drawing a spike to nowhere.
fn segments(x: &[f32], y: &[f32]) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (&xi, &yi) in x.iter().zip(y) {
        if xi.is_finite() && yi.is_finite() {
            current.push((f64::from(xi), f64::from(yi)));
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// The plot of f (solid) and f′ (dashed) as an inline `<svg>`; `label` names it for screen readers.
pub(crate) fn shape_svg(shape: &Shape, label: &str) -> String {
    let f = segments(&shape.x, &shape.f);
    let df = segments(&shape.x, &shape.df);
    let points = || f.iter().chain(&df).flatten();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"shape\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n",
        escape(label)
    );
    let (Some((x0, x1)), Some((y0, y1))) =
        (extent(points().map(|p| p.0)), extent(points().map(|p| p.1)))
    else {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5c6670\">\
             no finite points to plot</text>\n</svg>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
    };
    let (xa, ya) = (Axis::new(x0, x1), Axis::new(y0, y1));
    let (px0, px1, py0, py1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let px = |v: f64| xa.map(v, px0, px1);
    let py = |v: f64| ya.map(v, py0, py1);

    // Grid and tick labels.
    for t in xa.ticks() {
        let x = px(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.2}\" y1=\"{py1}\" x2=\"{x:.2}\" y2=\"{py0}\" stroke=\"#e6e9ec\"/>\
             <text x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
            py0 + 16.0,
            xa.label(t)
        );
    }
    for t in ya.ticks() {
        let y = py(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{px0}\" y1=\"{y:.2}\" x2=\"{px1}\" y2=\"{y:.2}\" stroke=\"#e6e9ec\"/>\
             <text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\" fill=\"#333\">{}</text>",
            px0 - 6.0,
            y + 4.0,
            ya.label(t)
        );
    }
    // The zero lines, where they fall inside, make the origin easy to find.
    if xa.lo < 0.0 && xa.hi > 0.0 {
        let x = px(0.0);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.2}\" y1=\"{py1}\" x2=\"{x:.2}\" y2=\"{py0}\" stroke=\"#9aa3ab\"/>"
        );
    }
    if ya.lo < 0.0 && ya.hi > 0.0 {
        let y = py(0.0);
        let _ = writeln!(
            svg,
            "<line x1=\"{px0}\" y1=\"{y:.2}\" x2=\"{px1}\" y2=\"{y:.2}\" stroke=\"#9aa3ab\"/>"
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{px0}\" y=\"{py1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#5c6670\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">x</text>",
        px1 - px0,
        py0 - py1,
        (px0 + px1) / 2.0,
        HEIGHT - 8.0
    );

    for (runs, color, dash, width) in [
        (&f, F_COLOR, "", 2.0),
        (&df, DF_COLOR, " stroke-dasharray=\"6 4\"", 1.6),
    ] {
        for run in runs {
            svg.push_str("<polyline fill=\"none\" stroke-linejoin=\"round\" points=\"");
            for (i, &(x, y)) in run.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                let _ = write!(svg, "{sep}{:.2},{:.2}", px(x), py(y));
            }
            let _ = writeln!(
                svg,
                "\" stroke=\"{color}\" stroke-width=\"{width}\"{dash}/>"
            );
        }
    }

    // Legend, top left inside the frame, on a white box so that the curves do not cross it.
    let (lx, ly) = (px0 + 10.0, py1 + 10.0);
    let _ = write!(
        svg,
        "<rect x=\"{lx}\" y=\"{ly}\" width=\"96\" height=\"44\" fill=\"#fff\" fill-opacity=\"0.9\" stroke=\"#d8dde2\"/>\n\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{F_COLOR}\" stroke-width=\"2\"/>\
         <text x=\"{}\" y=\"{}\" fill=\"#333\">f(x)</text>\n\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{DF_COLOR}\" stroke-width=\"1.6\" stroke-dasharray=\"6 4\"/>\
         <text x=\"{}\" y=\"{}\" fill=\"#333\">f′(x)</text>\n</svg>",
        lx + 8.0,
        ly + 14.0,
        lx + 38.0,
        ly + 14.0,
        lx + 46.0,
        ly + 18.0,
        lx + 8.0,
        ly + 32.0,
        lx + 38.0,
        ly + 32.0,
        lx + 46.0,
        ly + 36.0,
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(0.21), 0.25);
        assert_eq!(nice_step(4.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert!((nice_step(0.0013) - 0.002).abs() < 1e-15);
    }

    #[test]
    fn axis_rounds_out_to_ticks_and_labels_them_briefly() {
        let a = Axis::new(-4.0, 4.0);
        assert_eq!((a.lo, a.hi, a.step), (-4.0, 4.0, 2.0));
        let labels: Vec<_> = a.ticks().iter().map(|&t| a.label(t)).collect();
        assert_eq!(labels, ["-4", "-2", "0", "2", "4"]);

        let b = Axis::new(-0.97, 1.0);
        assert_eq!(b.step, 0.5);
        let labels: Vec<_> = b.ticks().iter().map(|&t| b.label(t)).collect();
        assert_eq!(labels, ["-1.0", "-0.5", "0.0", "0.5", "1.0"]);
    }

    #[test]
    fn axis_survives_degenerate_and_huge_ranges() {
        for (lo, hi) in [
            (3.0, 3.0),
            (0.0, 0.0),
            (-1e300, 1e300),
            (-f64::MAX, f64::MAX),
        ] {
            let a = Axis::new(lo, hi);
            assert!(a.lo.is_finite() && a.hi.is_finite() && a.hi > a.lo, "{a:?}");
            let ticks = a.ticks();
            assert!((2..=25).contains(&ticks.len()), "{a:?}: {ticks:?}");
            assert!(ticks.iter().all(|t| t.is_finite()));
        }
    }

    #[test]
    fn non_finite_points_break_the_line() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0];
        let y = [0.0, f32::NAN, 2.0, 3.0, f32::INFINITY];
        assert_eq!(
            segments(&x, &y),
            vec![vec![(0.0, 0.0)], vec![(2.0, 2.0), (3.0, 3.0)]]
        );
    }

    #[test]
    fn plot_draws_both_curves_and_a_legend() {
        let x: Vec<f32> = (0..=160).map(|i| -4.0 + i as f32 * 0.05).collect();
        let shape = Shape {
            f: x.iter().map(|v| v.tanh()).collect(),
            df: x.iter().map(|v| 1.0 - v.tanh() * v.tanh()).collect(),
            x,
        };
        let svg = shape_svg(&shape, "tanh <shape>");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(
            svg.matches("stroke-dasharray").count(),
            2,
            "f′ and its legend"
        );
        assert!(svg.contains("aria-label=\"tanh &lt;shape&gt;\""));
        assert!(svg.contains(">f′(x)</text>") && svg.contains(">-4</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn plot_of_nothing_finite_says_so() {
        let empty = Shape {
            x: vec![],
            f: vec![],
            df: vec![],
        };
        let nan = Shape {
            x: vec![0.0, 1.0],
            f: vec![f32::NAN; 2],
            df: vec![f32::INFINITY],
        };
        for shape in [empty, nan] {
            let svg = shape_svg(&shape, "x");
            assert!(svg.contains("no finite points") && svg.ends_with("</svg>"));
            assert!(!svg.contains("<polyline"));
        }
    }

    #[test]
    fn plot_with_mismatched_lengths_and_gaps_stays_finite() {
        let shape = Shape {
            x: vec![-1.0, 0.0, 1.0, 2.0],
            f: vec![1.0, f32::NAN, 1.0],
            df: vec![f32::MAX, -f32::MAX],
        };
        let svg = shape_svg(&shape, "x");
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
