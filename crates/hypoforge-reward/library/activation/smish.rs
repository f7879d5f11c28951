// Smish (Wang et al., 2022, Electronics): ALPHA * x * tanh(ln(1 + sigmoid(BETA * x))), ALPHA = BETA = 1.
use hypoforge_sdk::prelude::*;

const ALPHA: f32 = 1.0;
const BETA: f32 = 1.0;

fn smish<R: Real>(x: R) -> R {
    x * tanh(ln_1p(sigmoid(x * BETA))) * ALPHA
}

activation!(name = "smish", f = smish);
