// Softsign with a hand-written derivative that forgets to square the denominator:
// f(x) = x / (1 + |x|), f'(x) = 1 / (1 + |x|)^2, not 1 / (1 + |x|).
use hypoforge_sdk::prelude::*;

fn softsign(x: f32) -> f32 {
    x / (1.0 + abs(x))
}

fn softsign_derivative(x: f32) -> f32 {
    1.0 / (1.0 + abs(x))
}

activation!(name = "softsign", f = softsign, df = softsign_derivative);
