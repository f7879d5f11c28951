// ReLU (Nair & Hinton, 2010): max(0, x); the derivative at 0 is taken as 0.
use hypoforge_sdk::prelude::*;

fn relu<R: Real>(x: R) -> R {
    if x > 0.0 { x } else { R::zero() }
}

activation!(name = "relu", f = relu);
