// Phish (Naveen, 2022): x * tanh(GELU(x)), GELU(x) = x * Phi(x) in its exact form.
use hypoforge_sdk::prelude::*;

fn phish<R: Real>(x: R) -> R {
    x * tanh(x * normal_cdf(x))
}

activation!(name = "phish", f = phish);
