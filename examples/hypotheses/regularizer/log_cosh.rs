// A smooth L1: lambda * sum ln(cosh(w / s)) * s, quadratic near zero and linear in the tails.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-4;
const SCALE: f64 = 0.1;

/// ln(cosh(t)) without overflow: |t| + ln(1 + e^(-2|t|)) - ln 2.
fn log_cosh(t: f64) -> f64 {
    let a = t.abs();
    a + libm::log1p(libm::exp(-2.0 * a)) - core::f64::consts::LN_2
}

fn penalty(w: Matrix<'_>) -> f32 {
    let sum: f64 = w.data().iter().map(|&v| log_cosh(f64::from(v) / SCALE) * SCALE).sum();
    (LAMBDA * sum) as f32
}

fn gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        *g = (LAMBDA * libm::tanh(f64::from(v) / SCALE)) as f32;
    }
}

regularizer!(name = "log_cosh", penalty = penalty, gradient = gradient);
