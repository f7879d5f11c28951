// Standardization that divides by the standard deviation without guarding constant columns:
// a constant column has std 0, so its outputs are 0 / 0 = NaN.
use hypoforge_sdk::prelude::*;

struct Naive(Vec<(f32, f32)>);

impl Preprocessor for Naive {
    fn fit(train: Matrix<'_>) -> Self {
        let n = train.rows() as f32;
        let stats = (0..train.cols())
            .map(|j| {
                let mean = train.column(j).sum::<f32>() / n;
                let var = train.column(j).map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
                (mean, sqrt(var))
            })
            .collect();
        Naive(stats)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &(mean, std)) in out.iter_mut().zip(row).zip(&self.0) {
            *o = (x - mean) / std;
        }
    }
}

preprocessor!(name = "naive_standardize", state = Naive);
