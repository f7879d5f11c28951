// Elastic net (Zou & Hastie, 2005): LAMBDA_1 * sum |w| + LAMBDA_2 * sum w^2.
use hypoforge_sdk::prelude::*;

const LAMBDA_1: f64 = 1e-5;
const LAMBDA_2: f64 = 5e-5;

fn elastic_net_penalty(w: Matrix<'_>) -> f32 {
    let (mut l1, mut l2) = (0.0f64, 0.0f64);
    for &v in w.data() {
        let v = f64::from(v);
        l1 += v.abs();
        l2 += v * v;
    }
    (LAMBDA_1 * l1 + LAMBDA_2 * l2) as f32
}

fn elastic_net_gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (g, &v) in out.iter_mut().zip(w.data()) {
        // The SDK's `signum` is 0 at 0 (unlike `f32::signum`).
        *g = (LAMBDA_1 * f64::from(signum(v)) + 2.0 * LAMBDA_2 * f64::from(v)) as f32;
    }
}

regularizer!(
    name = "elastic_net",
    penalty = elastic_net_penalty,
    gradient = elastic_net_gradient
);
