// Logish (Zhu et al., 2021, Neurocomputing): x * ln(1 + sigmoid(x)).
use hypoforge_sdk::prelude::*;

fn logish<R: Real>(x: R) -> R {
    x * ln_1p(sigmoid(x))
}

activation!(name = "logish", f = logish);
