//! Regularizer checks: finite penalty and gradient on awkward weights, exact gradient shape,
//! determinism, and the gradient against finite differences of the penalty.

use hypoforge_plugin::Regularizer;

use hypoforge_spec::rng::Rng;

use crate::probe::weight_matrices;
use crate::{CheckResult, Context, Failure, Run, same_bits};

/// Share of gradient entries allowed to disagree (kinks such as L1's at 0).
const FD_MISMATCH_ALLOWANCE: f64 = 0.05;

pub(crate) fn checks(ctx: &Context<'_>, run: &mut Run) {
    let mats = weight_matrices();
    let fresh =
        || -> Result<Regularizer, Failure> { Ok(ctx.plugin.regularizer(ctx.sandbox, ctx.limits)?) };
    run.check("penalty_finite", || {
        let mut r = fresh()?;
        for (rows, cols, w) in &mats {
            let p = r.penalty(w, *rows, *cols)?;
            if !p.is_finite() {
                return Err(Failure::Wrong(format!(
                    "penalty of a {rows}×{cols} matrix is {p}"
                )));
            }
        }
        Ok(format!(
            "{} matrices from 1×1 to 64×64, zeros and ±1e3 included",
            mats.len()
        ))
    });
    run.check("gradient_finite", || {
        let mut r = fresh()?;
        for (rows, cols, w) in &mats {
            let g = gradient(&mut r, w, *rows, *cols)?;
            if let Some(v) = g.iter().find(|v| !v.is_finite()) {
                return Err(Failure::Wrong(format!(
                    "gradient of a {rows}×{cols} matrix has {v}"
                )));
            }
        }
        Ok("finite, and exactly one value per weight".into())
    });
    run.check("deterministic", || {
        let (mut a, mut b) = (fresh()?, fresh()?);
        for (rows, cols, w) in &mats {
            let pa = a.penalty(w, *rows, *cols)?;
            let pb = b.penalty(w, *rows, *cols)?;
            let pa2 = a.penalty(w, *rows, *cols)?;
            let ga = gradient(&mut a, w, *rows, *cols)?;
            let gb = gradient(&mut b, w, *rows, *cols)?;
            if pa.to_bits() != pb.to_bits() || pa.to_bits() != pa2.to_bits() || !same_bits(&ga, &gb)
            {
                return Err(Failure::Wrong(format!(
                    "a {rows}×{cols} matrix gave different bits on repeat or in a fresh instance"
                )));
            }
        }
        Ok("same bits on repeat and in a fresh instance".into())
    });
    run.check("gradient_matches_finite_differences", || {
        finite_differences(&mut fresh()?)
    });
}

fn gradient(r: &mut Regularizer, w: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, Failure> {
    let mut g = vec![0.0; w.len()];
    r.gradient(w, rows, cols, &mut g)?;
    Ok(g)
}

/// Central differences of the penalty, entry by entry, on two small random matrices. Errors are
/// scaled by the largest gradient entry: the f32 penalty cannot resolve finer differences.
fn finite_differences(r: &mut Regularizer) -> CheckResult {
    let mut rng = Rng::new(0x5eed_0004);
    let (mut checked, mut mismatches) = (0usize, 0usize);
    let mut worst: Option<(f64, String)> = None;
    for (rows, cols, scale) in [(6usize, 5usize, 1.0f64), (3, 7, 2.0)] {
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.normal() * scale) as f32)
            .collect();
        let g = gradient(r, &w, rows, cols)?;
        let g_max = g.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        let p0 = f64::from(r.penalty(&w, rows, cols)?.abs());
        for i in 0..w.len() {
            let h = 1e-2f32;
            let mut wp = w.clone();
            wp[i] += h;
            let mut wm = w.clone();
            wm[i] -= h;
            let step = f64::from(wp[i]) - f64::from(wm[i]);
            let fd = (f64::from(r.penalty(&wp, rows, cols)?)
                - f64::from(r.penalty(&wm, rows, cols)?))
                / step;
            let rounding = 8.0 * f64::from(f32::EPSILON) * p0.max(1e-30) / step;
            let tolerance = 1e-2 * g_max.max(fd.abs()) + rounding + 1e-12;
            let err = (fd - f64::from(g[i])).abs();
            checked += 1;
            if err.is_nan() || err > tolerance {
                mismatches += 1;
                if worst.as_ref().is_none_or(|(e, _)| err > *e) {
                    worst = Some((
                        err,
                        format!(
                            "weight {i} of a {rows}×{cols} matrix: gradient {}, difference quotient {fd:.6e}",
                            g[i]
                        ),
                    ));
                }
            }
        }
    }
    match worst {
        Some((_, at)) if mismatches as f64 / checked as f64 > FD_MISMATCH_ALLOWANCE => {
            Err(Failure::Wrong(format!(
                "gradient disagrees with finite differences at {mismatches} of {checked} weights; worst: {at}"
            )))
        }
        _ => Ok(format!(
            "agrees at {} of {checked} weights",
            checked - mismatches
        )),
    }
}
