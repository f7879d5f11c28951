// Quantile uniform transform (scikit-learn QuantileTransformer, output_distribution='uniform'): empirical CDF(x) in [0, 1] per column.
use hypoforge_sdk::prelude::*;

/// At most this many training quantiles are kept per column (scikit-learn's n_quantiles default).
const MAX_QUANTILES: usize = 1000;

struct QuantileUniform {
    /// Ascending training quantiles of each column, evenly spaced in probability.
    quantiles: Vec<Vec<f32>>,
}

/// Empirical CDF of `x` against ascending quantiles `q`: linear between neighbours, the middle of
/// a run of equal quantiles on a tie, clipped to [0, 1] outside the training range, 0.5 for a
/// constant column.
fn cdf(q: &[f32], x: f32) -> f64 {
    let m = q.len();
    if m < 2 || q[0] == q[m - 1] {
        return 0.5;
    }
    let below = q.partition_point(|&v| v < x);
    let upto = q.partition_point(|&v| v <= x);
    let last = (m - 1) as f64;
    if below < upto {
        (below + upto - 1) as f64 / 2.0 / last
    } else if upto == 0 {
        0.0
    } else if upto == m {
        1.0
    } else {
        let (lo, hi) = (f64::from(q[upto - 1]), f64::from(q[upto]));
        ((upto - 1) as f64 + (f64::from(x) - lo) / (hi - lo)) / last
    }
}

impl Preprocessor for QuantileUniform {
    fn fit(train: Matrix<'_>) -> Self {
        let quantiles = (0..train.cols())
            .map(|j| {
                let s = stats::sorted(train.column(j));
                if s.len() <= MAX_QUANTILES {
                    return s;
                }
                let last = (MAX_QUANTILES - 1) as f32;
                (0..MAX_QUANTILES)
                    .map(|k| stats::quantile_sorted(&s, k as f32 / last))
                    .collect()
            })
            .collect();
        QuantileUniform { quantiles }
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), q) in out.iter_mut().zip(row).zip(&self.quantiles) {
            *o = cdf(q, x) as f32;
        }
    }
}

preprocessor!(name = "quantile_uniform", state = QuantileUniform);
