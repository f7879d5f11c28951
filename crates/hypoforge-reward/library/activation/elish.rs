// ELiSH (Basirat & Roth, 2018): x * sigmoid(x) for x >= 0, else (exp(x) - 1) * sigmoid(x).
use hypoforge_sdk::prelude::*;

fn elish<R: Real>(x: R) -> R {
    // exp_m1 is only evaluated on the negative branch, so it never overflows.
    if x >= 0.0 { x * sigmoid(x) } else { exp_m1(x) * sigmoid(x) }
}

activation!(name = "elish", f = elish);
