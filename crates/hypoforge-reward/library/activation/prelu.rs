// PReLU (He et al., 2015) at its published initial slope: x for x > 0, else SLOPE * x with SLOPE = 0.25.
use hypoforge_sdk::prelude::*;

const SLOPE: f32 = 0.25;

fn prelu<R: Real>(x: R) -> R {
    if x > 0.0 { x } else { x * SLOPE }
}

activation!(name = "prelu", f = prelu);
