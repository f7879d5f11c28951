// Softplus: ln(1 + exp(x)), evaluated in the SDK's overflow-free form.
use hypoforge_sdk::prelude::*;

fn softplus<R: Real>(x: R) -> R {
    x.softplus()
}

activation!(name = "softplus", f = softplus);
