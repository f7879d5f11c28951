//! Activation checks: finite f and f′ on the probe set, exact output shape, determinism, the
//! one-pass export agreeing with f and f′ alone, elementwise behaviour, and an author-written derivative against finite differences.

use hypoforge_plugin::Activation;
use hypoforge_spec::DerivativeSource;

use hypoforge_spec::rng::Rng;

use crate::probe::activation_probe;
use crate::{CheckResult, Context, Failure, Run, first_non_finite, same_bits};

/// Share of finite-difference points allowed to disagree (kinks such as ReLU's at 0).
const FD_MISMATCH_ALLOWANCE: f64 = 0.03;

pub(crate) fn checks(ctx: &Context<'_>, run: &mut Run) {
    let probe = activation_probe();
    let fresh =
        || -> Result<Activation, Failure> { Ok(ctx.plugin.activation(ctx.sandbox, ctx.limits)?) };
    run.check("forward_finite", || {
        let y = eval(&mut fresh()?, &probe, false)?;
        match first_non_finite("f", &probe, &y) {
            Some(bad) => Err(Failure::Wrong(bad)),
            None => Ok(format!(
                "{} inputs including 0, ±1e-6, ±1, ±10, ±1e4",
                probe.len()
            )),
        }
    });
    run.check("derivative_finite", || {
        let dy = eval(&mut fresh()?, &probe, true)?;
        match first_non_finite("f'", &probe, &dy) {
            Some(bad) => Err(Failure::Wrong(bad)),
            None => Ok(format!("{} inputs", probe.len())),
        }
    });
    run.check("output_shape", || {
        let mut act = fresh()?;
        for n in [1usize, 7, 64, 1000, 4096] {
            let x: Vec<f32> = probe.iter().copied().cycle().take(n).collect();
            eval(&mut act, &x, false)?;
            eval(&mut act, &x, true)?;
            eval_both(&mut act, &x)?;
        }
        Ok("writes exactly n outputs for n in 1, 7, 64, 1000, 4096".into())
    });
    run.check("deterministic", || {
        let mut a = fresh()?;
        let first = (eval(&mut a, &probe, false)?, eval(&mut a, &probe, true)?);
        let again = (eval(&mut a, &probe, false)?, eval(&mut a, &probe, true)?);
        let mut b = fresh()?;
        let fresh_run = (eval(&mut b, &probe, false)?, eval(&mut b, &probe, true)?);
        for (what, other) in [
            ("a repeated call", &again),
            ("a fresh instance", &fresh_run),
        ] {
            if !same_bits(&first.0, &other.0) || !same_bits(&first.1, &other.1) {
                return Err(Failure::Wrong(format!(
                    "{what} gave different bits for the same inputs"
                )));
            }
        }
        Ok("same bits on repeat and in a fresh instance".into())
    });
    run.check("one_pass_matches", || {
        // Training takes f and f' from the one-pass export; they must be the f and f' that
        // every other check and every report sees.
        let mut act = fresh()?;
        let (y, dy) = eval_both(&mut act, &probe)?;
        let (y_alone, dy_alone) = (
            eval(&mut act, &probe, false)?,
            eval(&mut act, &probe, true)?,
        );
        if !same_bits(&y, &y_alone) {
            return Err(Failure::Wrong(
                "f from the one-pass export differs from f alone".into(),
            ));
        }
        if !same_bits(&dy, &dy_alone) {
            return Err(Failure::Wrong(
                "f' from the one-pass export differs from f' alone".into(),
            ));
        }
        Ok("f and f' in one pass have the same bits as each alone".into())
    });
    run.check("elementwise", || {
        let mut act = fresh()?;
        let y = eval(&mut act, &probe, false)?;
        let reversed: Vec<f32> = probe.iter().rev().copied().collect();
        let mut y_rev = eval(&mut act, &reversed, false)?;
        y_rev.reverse();
        let mut y_one = Vec::with_capacity(16);
        for &x in &probe[..16] {
            y_one.extend(eval(&mut act, &[x], false)?);
        }
        if !same_bits(&y, &y_rev) || !same_bits(&y[..16], &y_one) {
            return Err(Failure::Wrong(
                "f(x[i]) depends on the other elements of the buffer".into(),
            ));
        }
        Ok("each output depends only on its own input".into())
    });
    run.check("derivative_matches_finite_differences", || {
        match ctx.derivative_source() {
            DerivativeSource::Author => finite_differences(&mut fresh()?),
            _ => Ok("exact: derived by dual numbers".into()),
        }
    });
}

fn eval(act: &mut Activation, x: &[f32], derivative: bool) -> Result<Vec<f32>, Failure> {
    let mut y = vec![0.0; x.len()];
    if derivative {
        act.derivative(x, &mut y)?;
    } else {
        act.forward(x, &mut y)?;
    }
    Ok(y)
}

fn eval_both(act: &mut Activation, x: &[f32]) -> Result<(Vec<f32>, Vec<f32>), Failure> {
    let (mut y, mut dy) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    act.forward_with_derivative(x, &mut y, &mut dy)?;
    Ok((y, dy))
}

/// Compare f′ with central differences `(f(x+h) − f(x−h)) / 2h` at random points.
fn finite_differences(act: &mut Activation) -> CheckResult {
    let mut rng = Rng::new(0x5eed_0002);
    let xs: Vec<f32> = (0..320)
        .map(|i| {
            if i < 256 {
                rng.range(-6.0, 6.0)
            } else {
                rng.range(-30.0, 30.0)
            }
        })
        .collect();
    let plus: Vec<f32> = xs.iter().map(|&x| x + 1e-2 * x.abs().max(1.0)).collect();
    let minus: Vec<f32> = xs.iter().map(|&x| x - 1e-2 * x.abs().max(1.0)).collect();
    let (fp, fm) = (eval(act, &plus, false)?, eval(act, &minus, false)?);
    let d = eval(act, &xs, true)?;
    let mut worst: Option<(f64, usize, f64)> = None;
    let mut mismatches = 0usize;
    for i in 0..xs.len() {
        let step = f64::from(plus[i]) - f64::from(minus[i]);
        let fd = (f64::from(fp[i]) - f64::from(fm[i])) / step;
        let analytic = f64::from(d[i]);
        let rounding =
            4.0 * f64::from(f32::EPSILON) * f64::from(fp[i].abs().max(fm[i].abs())) / step;
        let tolerance = 1e-2 * analytic.abs().max(fd.abs()).max(1.0) + rounding;
        let err = (fd - analytic).abs();
        if err.is_nan() || err > tolerance {
            mismatches += 1;
            if worst.is_none_or(|(w, _, _)| err > w) {
                worst = Some((err, i, fd));
            }
        }
    }
    let share = mismatches as f64 / xs.len() as f64;
    match worst {
        Some((_, i, fd)) if share > FD_MISMATCH_ALLOWANCE => Err(Failure::Wrong(format!(
            "f' disagrees with finite differences at {mismatches} of {} points; worst at x = {}: f' = {}, difference quotient = {fd:.6}",
            xs.len(),
            xs[i],
            d[i]
        ))),
        _ => Ok(format!(
            "agrees at {} of {} points (kinks may account for the rest)",
            xs.len() - mismatches,
            xs.len()
        )),
    }
}
