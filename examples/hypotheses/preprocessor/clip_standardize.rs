// Standardize, then clip to [-3, 3]: outliers in validation data cannot blow up activations.
use hypoforge_sdk::prelude::*;

const LIMIT: f32 = 3.0;

struct ClipStandardize(Vec<(f32, f32)>);

impl Preprocessor for ClipStandardize {
    fn fit(train: Matrix<'_>) -> Self {
        let columns = (0..train.cols())
            .map(|j| {
                let mean = stats::mean(train.column(j));
                let std = sqrt(stats::variance(train.column(j)));
                (mean, if std > 1e-12 { std } else { 1.0 })
            })
            .collect();
        ClipStandardize(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &(mean, std)) in out.iter_mut().zip(row).zip(&self.0) {
            *o = clamp((x - mean) / std, -LIMIT, LIMIT);
        }
    }
}

preprocessor!(name = "clip_standardize", state = ClipStandardize);
