// Hard-swish (Howard et al., 2019, "Searching for MobileNetV3"): x * ReLU6(x + 3) / 6.
use hypoforge_sdk::prelude::*;

fn hardswish<R: Real>(x: R) -> R {
    x * clamp(x + 3.0, 0.0, 6.0) / 6.0
}

activation!(name = "hardswish", f = hardswish);
