// A feature selector that selects nothing: output width 0.
use hypoforge_sdk::prelude::*;

struct Nothing;

impl Preprocessor for Nothing {
    fn fit(_train: Matrix<'_>) -> Self {
        Nothing
    }

    fn output_width(&self, _input_width: usize) -> usize {
        0
    }

    fn transform_row(&self, _row: &[f32], _out: &mut [f32]) {}
}

preprocessor!(name = "select_nothing", state = Nothing);
