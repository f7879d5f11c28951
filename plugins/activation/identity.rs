// Identity activation f(x) = x: a linear sanity control.
use hypoforge_sdk::prelude::*;

fn identity<R: Real>(x: R) -> R {
    x
}

activation!(name = "identity", f = identity);
