// ReLU6 (Krizhevsky, 2010, "Convolutional deep belief networks on CIFAR-10"): min(max(0, x), 6).
use hypoforge_sdk::prelude::*;

const CAP: f32 = 6.0;

fn relu6<R: Real>(x: R) -> R {
    clamp(x, 0.0, CAP)
}

activation!(name = "relu6", f = relu6);
