// SQNL (Wuraola & Patel, 2018, IJCNN): 1 for x > 2, x - x^2/4 on [0, 2], x + x^2/4 on [-2, 0), -1 below -2.
use hypoforge_sdk::prelude::*;

fn sqnl<R: Real>(x: R) -> R {
    if x > 2.0 {
        R::one()
    } else if x >= 0.0 {
        x - x * x * 0.25
    } else if x >= -2.0 {
        x + x * x * 0.25
    } else {
        -R::one()
    }
}

activation!(name = "sqnl", f = sqnl);
