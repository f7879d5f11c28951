// Hard sigmoid (Howard et al., 2019, "Searching for MobileNetV3"): ReLU6(x + 3) / 6.
use hypoforge_sdk::prelude::*;

fn hard_sigmoid<R: Real>(x: R) -> R {
    clamp(x + 3.0, 0.0, 6.0) / 6.0
}

activation!(name = "hard_sigmoid", f = hard_sigmoid);
