// No regularization: penalty 0, gradient 0 (a sanity control).
use hypoforge_sdk::prelude::*;

fn none_penalty(_w: Matrix<'_>) -> f32 {
    0.0
}

fn none_gradient(_w: Matrix<'_>, out: &mut [f32]) {
    out.fill(0.0);
}

regularizer!(
    name = "none",
    penalty = none_penalty,
    gradient = none_gradient
);
