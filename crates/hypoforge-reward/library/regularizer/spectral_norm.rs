// Spectral norm regularization (Yoshida & Miyato, 2017): LAMBDA / 2 * sigma_max(W)^2, gradient LAMBDA * sigma u v^T.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = 1e-2;
/// Power iterations on W^T W, at most; they stop early once sigma^2 settles.
const MAX_ITERS: usize = 300;
/// Relative change of sigma^2 below which the iteration has converged.
const TOL: f64 = 1e-14;

/// `W x` for a row-major matrix.
fn mat_vec(w: Matrix<'_>, x: &[f64]) -> Vec<f64> {
    w.iter_rows()
        .map(|row| row.iter().zip(x).map(|(&a, b)| f64::from(a) * b).sum())
        .collect()
}

/// `W^T y`.
fn mat_t_vec(w: Matrix<'_>, y: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0f64; w.cols()];
    for (row, &yi) in w.iter_rows().zip(y) {
        for (o, &a) in out.iter_mut().zip(row) {
            *o += f64::from(a) * yi;
        }
    }
    out
}

fn normalize(v: &mut [f64]) -> f64 {
    let n = libm::sqrt(v.iter().map(|x| x * x).sum::<f64>());
    if n > 0.0 {
        for x in v.iter_mut() {
            *x /= n;
        }
    }
    n
}

/// sigma_max(W)^2 and the top right singular vector v, by power iteration from a fixed start.
fn top(w: Matrix<'_>) -> (f64, Vec<f64>) {
    let c = w.cols();
    // A fixed, uneven start so it is not orthogonal to the top singular vector by symmetry.
    let mut v: Vec<f64> = (0..c).map(|k| 1.0 + 0.1 * k as f64 / c.max(1) as f64).collect();
    normalize(&mut v);
    let mut sigma2 = 0.0f64;
    for _ in 0..MAX_ITERS {
        let u = mat_vec(w, &v);
        let s2: f64 = u.iter().map(|x| x * x).sum();
        let mut next = mat_t_vec(w, &u);
        if normalize(&mut next) == 0.0 {
            return (0.0, vec![0.0; c]);
        }
        v = next;
        let settled = (s2 - sigma2).abs() <= TOL * s2;
        sigma2 = s2;
        if settled {
            break;
        }
    }
    // The Rayleigh quotient at the final v.
    let u = mat_vec(w, &v);
    (u.iter().map(|x| x * x).sum(), v)
}

fn spectral_norm_penalty(w: Matrix<'_>) -> f32 {
    (LAMBDA / 2.0 * top(w).0) as f32
}

fn spectral_norm_gradient(w: Matrix<'_>, out: &mut [f32]) {
    // d/dW sigma^2 / 2 = sigma u v^T = (W v) v^T.
    let (_, v) = top(w);
    let wv = mat_vec(w, &v);
    for (g_row, &wvi) in out.chunks_mut(w.cols().max(1)).zip(&wv) {
        for (g, vk) in g_row.iter_mut().zip(&v) {
            *g = (LAMBDA * wvi * vk) as f32;
        }
    }
}

regularizer!(
    name = "spectral_norm",
    penalty = spectral_norm_penalty,
    gradient = spectral_norm_gradient
);
