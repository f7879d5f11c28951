// A log activation that forgets the domain: ln(-1) is NaN, and every input gives a negative
// argument here.
use hypoforge_sdk::prelude::*;

fn log_act<R: Real>(x: R) -> R {
    ln(-(x * x) - 1.0)
}

activation!(name = "log_act", f = log_act);
