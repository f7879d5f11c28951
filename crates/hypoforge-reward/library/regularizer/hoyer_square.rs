// Hoyer-Square (Yang, Wen & Li, 2020, DeepHoyer): LAMBDA * (sum |w|)^2 / sum w^2 over the whole matrix.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-4;

fn sums(w: Matrix<'_>) -> (f64, f64) {
    w.data().iter().fold((0.0, 0.0), |(l1, l2), &v| {
        let v = f64::from(v);
        (l1 + v.abs(), l2 + v * v)
    })
}

fn hoyer_square_penalty(w: Matrix<'_>) -> f32 {
    let (l1, l2) = sums(w);
    // An all-zero matrix is taken as 0 (the 0/0 limit along any ray is bounded; 0 keeps it sparse).
    if l2 > 0.0 { (LAMBDA * l1 * l1 / l2) as f32 } else { 0.0 }
}

fn hoyer_square_gradient(w: Matrix<'_>, out: &mut [f32]) {
    let (l1, l2) = sums(w);
    if !(l2 > 0.0) {
        out.fill(0.0);
        return;
    }
    // d/dw (l1^2 / l2) = 2 l1 sign(w) / l2 - 2 l1^2 w / l2^2.
    let a = 2.0 * LAMBDA * l1 / l2;
    let b = 2.0 * LAMBDA * l1 * l1 / (l2 * l2);
    for (g, &v) in out.iter_mut().zip(w.data()) {
        *g = (a * f64::from(signum(v)) - b * f64::from(v)) as f32;
    }
}

regularizer!(
    name = "hoyer_square",
    penalty = hoyer_square_penalty,
    gradient = hoyer_square_gradient
);
