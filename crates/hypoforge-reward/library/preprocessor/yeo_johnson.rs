// Yeo-Johnson power transform (Yeo & Johnson, 2000; scikit-learn PowerTransformer defaults): per column, lambda by maximum likelihood, then standardized.
use hypoforge_sdk::prelude::*;

/// Lambda is searched over [LAMBDA_LO, LAMBDA_HI] (scikit-learn's Brent search starts from the bracket (-2, 2)).
const LAMBDA_LO: f64 = -10.0;
const LAMBDA_HI: f64 = 10.0;
/// Coarse grid step before the golden-section refinement.
const GRID_STEP: f64 = 0.05;
/// Golden-section iterations (the bracket shrinks by 0.618 each time).
const REFINE_STEPS: usize = 60;
/// Below this (population) standard deviation a transformed column keeps scale 1.
const MIN_STD: f64 = 1e-12;

/// The Yeo-Johnson transform of one value.
fn psi(x: f64, lambda: f64) -> f64 {
    if x >= 0.0 {
        if lambda.abs() < 1e-12 {
            libm::log1p(x)
        } else {
            (libm::pow(x + 1.0, lambda) - 1.0) / lambda
        }
    } else if (lambda - 2.0).abs() < 1e-12 {
        -libm::log1p(-x)
    } else {
        -(libm::pow(1.0 - x, 2.0 - lambda) - 1.0) / (2.0 - lambda)
    }
}

/// Population mean and variance of the transformed column.
fn moments(xs: &[f64], lambda: f64) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().map(|&x| psi(x, lambda)).sum::<f64>() / n;
    let var = xs
        .iter()
        .map(|&x| {
            let d = psi(x, lambda) - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, var)
}

/// The profile log-likelihood scikit-learn maximizes: -n/2 ln var(psi) + (lambda - 1) sum sign(x) ln(1 + |x|).
fn log_likelihood(xs: &[f64], log_term: f64, lambda: f64) -> f64 {
    let (_, var) = moments(xs, lambda);
    if !(var > 0.0 && var.is_finite()) {
        return f64::NEG_INFINITY;
    }
    -(xs.len() as f64) / 2.0 * libm::log(var) + (lambda - 1.0) * log_term
}

fn fit_lambda(xs: &[f64]) -> f64 {
    let log_term: f64 = xs.iter().map(|&x| x.signum() * libm::log1p(x.abs())).sum();
    let steps = ((LAMBDA_HI - LAMBDA_LO) / GRID_STEP) as usize;
    let (mut best, mut best_ll) = (1.0, log_likelihood(xs, log_term, 1.0));
    for k in 0..=steps {
        let lambda = LAMBDA_LO + k as f64 * GRID_STEP;
        let ll = log_likelihood(xs, log_term, lambda);
        if ll > best_ll {
            best = lambda;
            best_ll = ll;
        }
    }
    if !best_ll.is_finite() {
        // A constant (or degenerate) column: leave it untransformed.
        return 1.0;
    }
    let ratio = (libm::sqrt(5.0) - 1.0) / 2.0;
    let (mut a, mut b) = ((best - GRID_STEP).max(LAMBDA_LO), (best + GRID_STEP).min(LAMBDA_HI));
    for _ in 0..REFINE_STEPS {
        let c = b - ratio * (b - a);
        let d = a + ratio * (b - a);
        if log_likelihood(xs, log_term, c) >= log_likelihood(xs, log_term, d) {
            b = d;
        } else {
            a = c;
        }
    }
    let refined = 0.5 * (a + b);
    if log_likelihood(xs, log_term, refined) >= best_ll { refined } else { best }
}

/// Per column: (lambda, mean, std) of the transformed training column.
struct YeoJohnson(Vec<(f64, f64, f64)>);

impl Preprocessor for YeoJohnson {
    fn fit(train: Matrix<'_>) -> Self {
        let columns = (0..train.cols())
            .map(|j| {
                let xs: Vec<f64> = train.column(j).map(f64::from).collect();
                let lambda = fit_lambda(&xs);
                let (mean, var) = moments(&xs, lambda);
                let std = libm::sqrt(var);
                (lambda, mean, if std > MIN_STD && std.is_finite() { std } else { 1.0 })
            })
            .collect();
        YeoJohnson(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &(lambda, mean, std)) in out.iter_mut().zip(row).zip(&self.0) {
            *o = ((psi(f64::from(x), lambda) - mean) / std) as f32;
        }
    }
}

preprocessor!(name = "yeo_johnson", state = YeoJohnson);
