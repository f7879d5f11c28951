// PFLU (Zhu et al., 2021, Neurocomputing): x * (1 + x / sqrt(1 + x^2)) / 2.
use hypoforge_sdk::prelude::*;

fn pflu<R: Real>(x: R) -> R {
    x * (x / sqrt(x * x + 1.0) + 1.0) * 0.5
}

activation!(name = "pflu", f = pflu);
