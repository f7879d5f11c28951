// Standardization (z-score): (x - mean) / std per column, from training statistics.
use hypoforge_sdk::prelude::*;

/// Below this standard deviation a column counts as constant and keeps scale 1.
const MIN_STD: f64 = 1e-12;

/// Per column: (mean, std).
struct Standardize(Vec<(f64, f64)>);

impl Preprocessor for Standardize {
    fn fit(train: Matrix<'_>) -> Self {
        let n = train.rows().max(1) as f64;
        let columns = (0..train.cols())
            .map(|j| {
                let mean = train.column(j).map(f64::from).sum::<f64>() / n;
                let var = train
                    .column(j)
                    .map(|v| (f64::from(v) - mean) * (f64::from(v) - mean))
                    .sum::<f64>()
                    / n;
                let std = libm::sqrt(var);
                (mean, if std > MIN_STD { std } else { 1.0 })
            })
            .collect();
        Standardize(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &(mean, std)) in out.iter_mut().zip(row).zip(&self.0) {
            *o = ((f64::from(x) - mean) / std) as f32;
        }
    }
}

preprocessor!(name = "standardize", state = Standardize);
