// Leaky ReLU (Maas et al., 2013): x for x > 0, else SLOPE * x.
use hypoforge_sdk::prelude::*;

const SLOPE: f32 = 0.01;

fn leaky_relu<R: Real>(x: R) -> R {
    if x > 0.0 { x } else { x * SLOPE }
}

activation!(name = "leaky_relu", f = leaky_relu);
