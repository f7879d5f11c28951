// Mean centering (scikit-learn StandardScaler with_std=False, Pedregosa et al., 2011): x - mean per column.
use hypoforge_sdk::prelude::*;

/// Per column: the training mean.
struct MeanCenter(Vec<f64>);

impl Preprocessor for MeanCenter {
    fn fit(train: Matrix<'_>) -> Self {
        let n = train.rows().max(1) as f64;
        let columns = (0..train.cols())
            .map(|j| train.column(j).map(f64::from).sum::<f64>() / n)
            .collect();
        MeanCenter(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &mean) in out.iter_mut().zip(row).zip(&self.0) {
            *o = (f64::from(x) - mean) as f32;
        }
    }
}

preprocessor!(name = "mean_center", state = MeanCenter);
