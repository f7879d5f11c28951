// L1 penalty (lasso, Tibshirani 1996): LAMBDA * sum |w|, gradient LAMBDA * sign(w) (0 at w = 0).
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-5;

fn l1_penalty(w: Matrix<'_>) -> f32 {
    let sum: f64 = w.data().iter().map(|&v| f64::from(v).abs()).sum();
    (LAMBDA * sum) as f32
}

fn l1_gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        // The SDK's `signum` is 0 at 0 (unlike `f32::signum`).
        *g = (LAMBDA * f64::from(signum(v))) as f32;
    }
}

regularizer!(name = "l1", penalty = l1_penalty, gradient = l1_gradient);
