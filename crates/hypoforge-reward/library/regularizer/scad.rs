// SCAD penalty (Fan & Li, 2001) with the published A = 3.7 and threshold LAMBDA, scaled by STRENGTH, summed over weights.
use hypoforge_sdk::prelude::*;

/// Fan & Li's recommended shape parameter.
const A: f64 = 3.7;
/// The threshold lambda: L1-like below it, flat beyond A * lambda.
const LAMBDA: f64 = 0.1;
/// Overall scale, so the slope near zero (STRENGTH * LAMBDA = 1e-5) matches the l1 baseline.
const STRENGTH: f64 = 1e-4;

fn scad(t: f64) -> f64 {
    let t = t.abs();
    if t <= LAMBDA {
        LAMBDA * t
    } else if t <= A * LAMBDA {
        (2.0 * A * LAMBDA * t - t * t - LAMBDA * LAMBDA) / (2.0 * (A - 1.0))
    } else {
        LAMBDA * LAMBDA * (A + 1.0) / 2.0
    }
}

/// Derivative of `scad` with respect to `|t|`.
fn scad_slope(t: f64) -> f64 {
    let t = t.abs();
    if t <= LAMBDA {
        LAMBDA
    } else if t <= A * LAMBDA {
        (A * LAMBDA - t) / (A - 1.0)
    } else {
        0.0
    }
}

fn scad_penalty(w: Matrix<'_>) -> f32 {
    let sum: f64 = w.data().iter().map(|&v| scad(f64::from(v))).sum();
    (STRENGTH * sum) as f32
}

fn scad_gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        // The SDK's `signum` is 0 at 0, the subgradient taken there.
        let v64 = f64::from(v);
        *g = (STRENGTH * scad_slope(v64) * f64::from(signum(v))) as f32;
    }
}

regularizer!(name = "scad", penalty = scad_penalty, gradient = scad_gradient);
