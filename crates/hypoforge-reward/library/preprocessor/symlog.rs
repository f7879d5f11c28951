// Symlog (Hafner et al., 2023, DreamerV3): sign(x) * ln(1 + |x|), elementwise and stateless.
use hypoforge_sdk::prelude::*;

struct Symlog;

impl Preprocessor for Symlog {
    fn fit(_train: Matrix<'_>) -> Self {
        Symlog
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for (o, &x) in out.iter_mut().zip(row) {
            let v = f64::from(x);
            *o = (v.signum() * libm::log1p(v.abs())) as f32;
        }
    }
}

preprocessor!(name = "symlog", state = Symlog);
