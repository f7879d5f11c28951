// Min-max scaling: (x - min) / (max - min) per column, mapping the training range to [0, 1].
use hypoforge_sdk::prelude::*;

/// Per column: (min, 1 / (max - min)); a constant column gets (0, 0) and so maps to 0.
struct MinMax(Vec<(f64, f64)>);

impl Preprocessor for MinMax {
    fn fit(train: Matrix<'_>) -> Self {
        let columns = (0..train.cols())
            .map(|j| {
                let (lo, hi) = train
                    .column(j)
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                        (lo.min(v), hi.max(v))
                    });
                let range = f64::from(hi) - f64::from(lo);
                if range > 0.0 && range.is_finite() {
                    (f64::from(lo), 1.0 / range)
                } else {
                    (0.0, 0.0)
                }
            })
            .collect();
        MinMax(columns)
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), &(min, inv_range)) in out.iter_mut().zip(row).zip(&self.0) {
            *o = ((f64::from(x) - min) * inv_range) as f32;
        }
    }
}

preprocessor!(name = "min_max", state = MinMax);
