// Serf (Nag & Bhattacharyya, 2021): x * erf(ln(1 + exp(x))) = x * erf(softplus(x)).
use hypoforge_sdk::prelude::*;

fn serf<R: Real>(x: R) -> R {
    x * erf(softplus(x))
}

activation!(name = "serf", f = serf);
