// Identity preprocessor: passes every row through unchanged (a sanity control).
use hypoforge_sdk::prelude::*;

struct Identity;

impl Preprocessor for Identity {
    fn fit(_train: Matrix<'_>) -> Self {
        Identity
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        out.copy_from_slice(row);
    }
}

preprocessor!(name = "identity", state = Identity);
