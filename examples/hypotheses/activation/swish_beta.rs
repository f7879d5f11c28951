// Swish with a sharper gate, x * sigmoid(1.5 x): between SiLU (beta = 1) and ReLU (beta -> inf).
use hypoforge_sdk::prelude::*;

fn swish_beta<R: Real>(x: R) -> R {
    x * sigmoid(x * 1.5)
}

activation!(name = "swish_beta", f = swish_beta);
