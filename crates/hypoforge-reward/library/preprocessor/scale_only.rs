// Unit-variance scaling without centering (scikit-learn StandardScaler with_mean=False, Pedregosa et al., 2011): x / std per column.
use hypoforge_sdk::prelude::*;

/// Below this standard deviation a column counts as constant and keeps scale 1.
const MIN_STD: f64 = 1e-12;

/// Per column: the training (population) standard deviation.
struct ScaleOnly(Vec<f64>);

impl Preprocessor for ScaleOnly {
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
                if std > MIN_STD { std } else { 1.0 }
            })
            .collect();
        ScaleOnly(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &std) in out.iter_mut().zip(row).zip(&self.0) {
            *o = (f64::from(x) / std) as f32;
        }
    }
}

preprocessor!(name = "scale_only", state = ScaleOnly);
