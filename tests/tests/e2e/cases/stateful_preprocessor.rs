// A preprocessor that keeps learning while it transforms: a running count of the rows it has
// seen shifts every later output.
use core::cell::Cell;
use hypoforge_sdk::prelude::*;

struct Drift {
    seen: Cell<u32>,
}

impl Preprocessor for Drift {
    fn fit(_train: Matrix<'_>) -> Self {
        Drift { seen: Cell::new(0) }
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        let k = self.seen.get();
        self.seen.set(k + 1);
        for (o, &x) in out.iter_mut().zip(row) {
            *o = x + k as f32 * 1e-3;
        }
    }
}

preprocessor!(name = "drift", state = Drift);
