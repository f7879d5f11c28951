// Snake (Liu Ziyin et al., 2020): x + sin^2(A * x) / A with A = 1.
use hypoforge_sdk::prelude::*;

const A: f32 = 1.0;

fn snake<R: Real>(x: R) -> R {
    let s = sin(x * A);
    x + s * s / A
}

activation!(name = "snake", f = snake);
