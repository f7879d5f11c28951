// Growing Cosine Unit (Noel et al., 2021): x * cos(x).
use hypoforge_sdk::prelude::*;

fn gcu<R: Real>(x: R) -> R {
    x * cos(x)
}

activation!(name = "gcu", f = gcu);
