// Row L2 normalization (scikit-learn Normalizer, norm='l2', Pedregosa et al., 2011): x / ||x||_2 per row.
use hypoforge_sdk::prelude::*;

/// Stateless: each row is scaled by its own norm; an all-zero row stays zero.
struct L2Normalize;

impl Preprocessor for L2Normalize {
    fn fit(_train: Matrix<'_>) -> Self {
        L2Normalize
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        let norm = libm::sqrt(row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>());
        let inv = if norm > 0.0 && norm.is_finite() { 1.0 / norm } else { 1.0 };
        for (o, &x) in out.iter_mut().zip(row) {
            *o = (f64::from(x) * inv) as f32;
        }
    }
}

preprocessor!(name = "l2_normalize", state = L2Normalize);
