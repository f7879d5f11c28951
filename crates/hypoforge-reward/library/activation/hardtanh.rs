// HardTanh (Collobert, 2004, PhD thesis "Large scale machine learning"): clamp(x, -1, 1).
use hypoforge_sdk::prelude::*;

fn hardtanh<R: Real>(x: R) -> R {
    clamp(x, -1.0, 1.0)
}

activation!(name = "hardtanh", f = hardtanh);
