// Logistic sigmoid: 1 / (1 + exp(-x)), evaluated in the SDK's overflow-free form.
use hypoforge_sdk::prelude::*;

fn sigmoid<R: Real>(x: R) -> R {
    x.sigmoid()
}

activation!(name = "sigmoid", f = sigmoid);
