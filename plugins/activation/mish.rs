// Mish (Misra, 2019): x * tanh(softplus(x)).
use hypoforge_sdk::prelude::*;

fn mish<R: Real>(x: R) -> R {
    x * tanh(softplus(x))
}

activation!(name = "mish", f = mish);
