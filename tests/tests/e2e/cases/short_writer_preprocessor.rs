// Declares twice the input width (say, for interaction features) but only writes the first half
// of each output row.
use hypoforge_sdk::prelude::*;

struct Half;

impl Preprocessor for Half {
    fn fit(_train: Matrix<'_>) -> Self {
        Half
    }

    fn output_width(&self, input_width: usize) -> usize {
        2 * input_width
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        out[..row.len()].copy_from_slice(row);
    }
}

preprocessor!(name = "half_writer", state = Half);
