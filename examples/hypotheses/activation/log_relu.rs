// Logarithmic growth past zero, ln(1 + max(x, 0)), with an author-written derivative.
use hypoforge_sdk::prelude::*;

fn log_relu(x: f32) -> f32 {
    ln_1p(x.max(0.0))
}

fn log_relu_derivative(x: f32) -> f32 {
    if x > 0.0 { 1.0 / (1.0 + x) } else { 0.0 }
}

activation!(name = "log_relu", f = log_relu, df = log_relu_derivative);
