// A ReLU whose positive side saturates smoothly: softplus(x) - softplus(x - 6), a smooth ReLU6.
use hypoforge_sdk::prelude::*;

fn soft_clip<R: Real>(x: R) -> R {
    softplus(x) - softplus(x - 6.0)
}

activation!(name = "soft_clip", f = soft_clip);
