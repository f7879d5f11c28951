// An activation that asserts an input range the network will not respect.
use hypoforge_sdk::prelude::*;

fn bounded<R: Real>(x: R) -> R {
    if x.value() > 5.0 {
        panic!("hypothesis assumed |x| <= 5, got {}", x.value());
    }
    x
}

activation!(name = "bounded", f = bounded);
