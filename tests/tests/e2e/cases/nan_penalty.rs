// A "square-root L1" that takes the square root of signed weights: NaN for any negative weight.
use hypoforge_sdk::prelude::*;

fn penalty(w: Matrix<'_>) -> f32 {
    1e-3 * w.data().iter().map(|&v| sqrt(v)).sum::<f32>()
}

fn gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        *g = 5e-4 / sqrt(v);
    }
}

regularizer!(name = "sqrt_l1", penalty = penalty, gradient = gradient);
