// Minimax concave penalty (Zhang, 2010) with GAMMA = 3 (the ncvreg default) and threshold LAMBDA, scaled by STRENGTH.
use hypoforge_sdk::prelude::*;

const GAMMA: f64 = 3.0;
/// The threshold lambda: the penalty is flat beyond GAMMA * lambda.
const LAMBDA: f64 = 0.1;
/// Overall scale, so the slope near zero (STRENGTH * LAMBDA = 1e-5) matches the l1 baseline.
const STRENGTH: f64 = 1e-4;

fn mcp(t: f64) -> f64 {
    let t = t.abs();
    if t <= GAMMA * LAMBDA {
        LAMBDA * t - t * t / (2.0 * GAMMA)
    } else {
        GAMMA * LAMBDA * LAMBDA / 2.0
    }
}

/// Derivative of `mcp` with respect to `|t|`: (LAMBDA - |t| / GAMMA)_+.
fn mcp_slope(t: f64) -> f64 {
    (LAMBDA - t.abs() / GAMMA).max(0.0)
}

fn mcp_penalty(w: Matrix<'_>) -> f32 {
    let sum: f64 = w.data().iter().map(|&v| mcp(f64::from(v))).sum();
    (STRENGTH * sum) as f32
}

fn mcp_gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        // The SDK's `signum` is 0 at 0, the subgradient taken there.
        *g = (STRENGTH * mcp_slope(f64::from(v)) * f64::from(signum(v))) as f32;
    }
}

regularizer!(name = "mcp", penalty = mcp_penalty, gradient = mcp_gradient);
