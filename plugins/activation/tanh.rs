// Hyperbolic tangent: (exp(x) - exp(-x)) / (exp(x) + exp(-x)).
use hypoforge_sdk::prelude::*;

fn tanh<R: Real>(x: R) -> R {
    x.tanh()
}

activation!(name = "tanh", f = tanh);
