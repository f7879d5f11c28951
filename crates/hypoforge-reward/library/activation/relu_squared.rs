// Squared ReLU (So et al., 2021, "Primer: Searching for efficient transformers"): max(0, x)^2.
use hypoforge_sdk::prelude::*;

fn relu_squared<R: Real>(x: R) -> R {
    if x > 0.0 { x * x } else { R::zero() }
}

activation!(name = "relu_squared", f = relu_squared);
