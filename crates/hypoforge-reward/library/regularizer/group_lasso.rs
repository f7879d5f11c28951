// Group lasso (Yuan & Lin, 2006) with one group per row (unit): LAMBDA * sum over rows of sqrt(cols) * ||row||_2.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-5;

fn row_norm(row: &[f32]) -> f64 {
    libm::sqrt(row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
}

fn group_lasso_penalty(w: Matrix<'_>) -> f32 {
    // Each group is weighted by the square root of its size, as in Yuan & Lin.
    let weight = libm::sqrt(w.cols() as f64);
    let sum: f64 = w.iter_rows().map(row_norm).sum();
    (LAMBDA * weight * sum) as f32
}

fn group_lasso_gradient(w: Matrix<'_>, out: &mut [f32]) {
    let weight = libm::sqrt(w.cols() as f64);
    for (row, g) in w.iter_rows().zip(out.chunks_mut(w.cols().max(1))) {
        let norm = row_norm(row);
        // The subgradient 0 is taken at an all-zero row.
        let scale = if norm > 0.0 { LAMBDA * weight / norm } else { 0.0 };
        for (g, &v) in g.iter_mut().zip(row) {
            *g = (scale * f64::from(v)) as f32;
        }
    }
}

regularizer!(
    name = "group_lasso",
    penalty = group_lasso_penalty,
    gradient = group_lasso_gradient
);
