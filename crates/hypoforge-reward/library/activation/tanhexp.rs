// TanhExp (Liu & Di, 2020): x * tanh(exp(x)).
use hypoforge_sdk::prelude::*;

/// Above this, tanh(exp(x)) is exactly 1 in f32, so f(x) = x; it also keeps exp from overflowing.
const SATURATED: f32 = 20.0;

fn tanhexp<R: Real>(x: R) -> R {
    if x > SATURATED { x } else { x * tanh(exp(x)) }
}

activation!(name = "tanhexp", f = tanhexp);
