// Compress heavy tails with sign(x) * ln(1 + |x|), then standardize with training statistics.
use hypoforge_sdk::prelude::*;

fn squash(x: f32) -> f64 {
    let v = f64::from(x);
    v.signum() * libm::log1p(v.abs())
}

/// Per column: mean and standard deviation after squashing.
struct SignedLog(Vec<(f64, f64)>);

impl Preprocessor for SignedLog {
    fn fit(train: Matrix<'_>) -> Self {
        let n = train.rows().max(1) as f64;
        let columns = (0..train.cols())
            .map(|j| {
                let mean = train.column(j).map(squash).sum::<f64>() / n;
                let var = train
                    .column(j)
                    .map(|v| (squash(v) - mean) * (squash(v) - mean))
                    .sum::<f64>()
                    / n;
                let std = libm::sqrt(var);
                (mean, if std > 1e-12 { std } else { 1.0 })
            })
            .collect();
        SignedLog(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &(mean, std)) in out.iter_mut().zip(row).zip(&self.0) {
            *o = ((squash(x) - mean) / std) as f32;
        }
    }
}

preprocessor!(name = "signed_log", state = SignedLog);
