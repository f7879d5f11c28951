// Robust scaling: (x - median) / IQR per column, IQR = q75 - q25 of the training column.
use hypoforge_sdk::prelude::*;

/// Per column: (median, IQR); a zero IQR keeps scale 1.
struct Robust(Vec<(f64, f64)>);

impl Preprocessor for Robust {
    fn fit(train: Matrix<'_>) -> Self {
        let columns = (0..train.cols())
            .map(|j| {
                let s = stats::sorted(train.column(j));
                let q = |p: f32| f64::from(stats::quantile_sorted(&s, p));
                let iqr = q(0.75) - q(0.25);
                (q(0.5), if iqr > 0.0 { iqr } else { 1.0 })
            })
            .collect();
        Robust(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &(median, iqr)) in out.iter_mut().zip(row).zip(&self.0) {
            *o = ((f64::from(x) - median) / iqr) as f32;
        }
    }
}

preprocessor!(name = "robust", state = Robust);
