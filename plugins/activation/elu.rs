// ELU (Clevert et al., 2015): x for x > 0, else ALPHA * (exp(x) - 1).
use hypoforge_sdk::prelude::*;

const ALPHA: f32 = 1.0;

fn elu<R: Real>(x: R) -> R {
    // exp_m1 is only evaluated on the negative branch, so it never overflows.
    if x > 0.0 { x } else { exp_m1(x) * ALPHA }
}

activation!(name = "elu", f = elu);
