// Soft orthogonality (Brock et al., 2017; Bansal et al., 2018): LAMBDA * ||W W^T - I||_F^2 over the rows (units) of W.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-4;

/// `W W^T - I` (`rows × rows`, row-major, f64).
fn gram_minus_identity(w: Matrix<'_>) -> Vec<f64> {
    let r = w.rows();
    let mut g = vec![0.0f64; r * r];
    for i in 0..r {
        let wi = w.row(i);
        for j in i..r {
            let dot: f64 = wi
                .iter()
                .zip(w.row(j))
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let v = if i == j { dot - 1.0 } else { dot };
            g[i * r + j] = v;
            g[j * r + i] = v;
        }
    }
    g
}

fn soft_orthogonality_penalty(w: Matrix<'_>) -> f32 {
    let sum: f64 = gram_minus_identity(w).iter().map(|v| v * v).sum();
    (LAMBDA * sum) as f32
}

fn soft_orthogonality_gradient(w: Matrix<'_>, out: &mut [f32]) {
    // d/dW ||W W^T - I||_F^2 = 4 (W W^T - I) W.
    let (r, c) = (w.rows(), w.cols());
    let g = gram_minus_identity(w);
    for i in 0..r {
        for k in 0..c {
            let s: f64 = (0..r).map(|j| g[i * r + j] * f64::from(w.get(j, k))).sum();
            out[i * c + k] = (4.0 * LAMBDA * s) as f32;
        }
    }
}

regularizer!(
    name = "soft_orthogonality",
    penalty = soft_orthogonality_penalty,
    gradient = soft_orthogonality_gradient
);
