// Soft max-norm (cf. Srivastava et al., 2014): LAMBDA * sum over rows of max(0, ||row||_2 - MAX_NORM)^2.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-2;
const MAX_NORM: f64 = 3.0;

/// How far a row's Euclidean norm exceeds `MAX_NORM` (0 when it does not), and the norm.
fn excess(row: &[f32]) -> (f64, f64) {
    let sq: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let norm = libm::sqrt(sq);
    ((norm - MAX_NORM).max(0.0), norm)
}

fn max_norm_penalty(w: Matrix<'_>) -> f32 {
    let sum: f64 = w.iter_rows().map(|row| excess(row).0).map(|e| e * e).sum();
    (LAMBDA * sum) as f32
}

fn max_norm_gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (row, g) in w.iter_rows().zip(out.chunks_mut(w.cols().max(1))) {
        let (e, norm) = excess(row);
        // d/dw of LAMBDA * e^2 is 2 * LAMBDA * e * w / norm; e > 0 implies norm > 0, so no 0/0.
        let scale = if e > 0.0 {
            2.0 * LAMBDA * e / norm
        } else {
            0.0
        };
        for (g, &v) in g.iter_mut().zip(row) {
            *g = (scale * f64::from(v)) as f32;
        }
    }
}

regularizer!(
    name = "max_norm",
    penalty = max_norm_penalty,
    gradient = max_norm_gradient
);
