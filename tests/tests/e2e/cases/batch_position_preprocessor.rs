// A preprocessor whose output depends on a row's position in the stream of rows, but in a way
// that repeats every 79 rows. The validator transforms 37 validation rows, 200 training rows
// (37 + 200 = 237 = 3 * 79) and the validation rows again, so the repeat looks pure; only
// transforming a row on its own shows that the output depends on what came before it.
use core::cell::Cell;
use hypoforge_sdk::prelude::*;

struct Positional {
    seen: Cell<u32>,
}

impl Preprocessor for Positional {
    fn fit(_train: Matrix<'_>) -> Self {
        Positional { seen: Cell::new(0) }
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        let k = self.seen.get();
        self.seen.set(k + 1);
        for (o, &x) in out.iter_mut().zip(row) {
            *o = x + (k % 79) as f32;
        }
    }
}

preprocessor!(name = "positional", state = Positional);
