// L2 with the gradient's factor 2 forgotten: penalty 1e-3 * sum w^2, "gradient" 1e-3 * w.
use hypoforge_sdk::prelude::*;

fn penalty(w: Matrix<'_>) -> f32 {
    1e-3 * w.data().iter().map(|v| v * v).sum::<f32>()
}

fn gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        *g = 1e-3 * v;
    }
}

regularizer!(name = "half_l2", penalty = penalty, gradient = gradient);
