// An unclamped exponential: fine near zero, infinite at x = 1e4.
use hypoforge_sdk::prelude::*;

fn grow<R: Real>(x: R) -> R {
    exp(x)
}

activation!(name = "grow", f = grow);
