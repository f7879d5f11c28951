// LiSHT (Roy et al., 2019, "Linearly scaled hyperbolic tangent"): x * tanh(x).
use hypoforge_sdk::prelude::*;

fn lisht<R: Real>(x: R) -> R {
    x * tanh(x)
}

activation!(name = "lisht", f = lisht);
