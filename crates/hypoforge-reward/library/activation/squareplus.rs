// Squareplus (Barron, 2021): (x + sqrt(x^2 + B)) / 2 with the default B = 4.
use hypoforge_sdk::prelude::*;

const B: f32 = 4.0;

fn squareplus<R: Real>(x: R) -> R {
    (x + sqrt(x * x + B)) * 0.5
}

activation!(name = "squareplus", f = squareplus);
