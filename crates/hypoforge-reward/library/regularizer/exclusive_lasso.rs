// Exclusive lasso (Zhou et al., 2010; Kong et al., 2014) with one group per row: LAMBDA * sum over rows of (sum |w|)^2.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-5;

fn row_l1(row: &[f32]) -> f64 {
    row.iter().map(|&v| f64::from(v).abs()).sum()
}

fn exclusive_lasso_penalty(w: Matrix<'_>) -> f32 {
    let sum: f64 = w.iter_rows().map(row_l1).map(|s| s * s).sum();
    (LAMBDA * sum) as f32
}

fn exclusive_lasso_gradient(w: Matrix<'_>, out: &mut [f32]) {
    for (row, g) in w.iter_rows().zip(out.chunks_mut(w.cols().max(1))) {
        let scale = 2.0 * LAMBDA * row_l1(row);
        for (g, &v) in g.iter_mut().zip(row) {
            // The SDK's `signum` is 0 at 0 (unlike `f32::signum`).
            *g = (scale * f64::from(signum(v))) as f32;
        }
    }
}

regularizer!(
    name = "exclusive_lasso",
    penalty = exclusive_lasso_penalty,
    gradient = exclusive_lasso_gradient
);
