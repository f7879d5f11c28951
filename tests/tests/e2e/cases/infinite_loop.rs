// A fixed-point iteration whose stopping test can never succeed: `next - next` is 0 or NaN,
// never negative. Each call spins until the sandbox's instruction budget runs out.
use hypoforge_sdk::prelude::*;

fn never_converges<R: Real>(x: R) -> R {
    let mut y = x;
    loop {
        let next = (y + x / (y * y + 1.0)) * 0.5;
        if (next - next).value() < 0.0 {
            return next;
        }
        y = next;
    }
}

activation!(name = "never_converges", f = never_converges);
