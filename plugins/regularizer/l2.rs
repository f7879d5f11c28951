// L2 weight decay (ridge): LAMBDA * sum w^2, gradient 2 * LAMBDA * w.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-4;

fn l2_penalty(w: Matrix<'_>) -> f32 {
    let sum: f64 = w.data().iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    (LAMBDA * sum) as f32
}

fn l2_gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        *g = (2.0 * LAMBDA * f64::from(v)) as f32;
    }
}

regularizer!(name = "l2", penalty = l2_penalty, gradient = l2_gradient);
