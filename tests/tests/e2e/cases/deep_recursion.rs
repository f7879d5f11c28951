// A series expansion whose base case is never reached (n counts up from 1, not down), and whose
// recursion is not a tail call, so every step costs a stack frame.
use hypoforge_sdk::prelude::*;

fn deep(x: f32, n: u64) -> f32 {
    if n == 0 { x } else { deep(x + 1.0, n + 1) * 0.5 + 0.25 }
}

fn series<R: Real>(x: R) -> R {
    R::c(deep(x.value(), 1))
}

activation!(name = "series", f = series);
