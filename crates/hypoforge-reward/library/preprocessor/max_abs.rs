// Max-abs scaling (scikit-learn MaxAbsScaler, Pedregosa et al., 2011): x / max|x| per column, into [-1, 1].
use hypoforge_sdk::prelude::*;

/// Per column: 1 / max|x| over the training column; an all-zero column keeps scale 1.
struct MaxAbs(Vec<f64>);

impl Preprocessor for MaxAbs {
    fn fit(train: Matrix<'_>) -> Self {
        let columns = (0..train.cols())
            .map(|j| {
                let m = train.column(j).fold(0.0f64, |m, v| m.max(f64::from(v).abs()));
                if m > 0.0 && m.is_finite() { 1.0 / m } else { 1.0 }
            })
            .collect();
        MaxAbs(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &inv) in out.iter_mut().zip(row).zip(&self.0) {
            *o = (f64::from(x) * inv) as f32;
        }
    }
}

preprocessor!(name = "max_abs", state = MaxAbs);
