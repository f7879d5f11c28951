// A lighter L2 penalty, 1e-5 * sum w^2: one pass is short, so less shrinkage may help.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-5;

fn penalty(w: Matrix<'_>) -> f32 {
    (LAMBDA * w.data().iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()) as f32
}

fn gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        *g = (2.0 * LAMBDA * f64::from(v)) as f32;
    }
}

regularizer!(name = "l2_light", penalty = penalty, gradient = gradient);
