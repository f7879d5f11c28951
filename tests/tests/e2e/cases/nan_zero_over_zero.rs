// "Normalised identity": x / x times something, which is 0 / 0 = NaN everywhere.
use hypoforge_sdk::prelude::*;

fn ratio<R: Real>(x: R) -> R {
    (x - x) / (x - x)
}

activation!(name = "ratio", f = ratio);
