// SELU (Klambauer et al., 2017): SCALE * (x for x > 0, else ALPHA * (exp(x) - 1)).
use hypoforge_sdk::prelude::*;

const ALPHA: f32 = 1.673_263_2; // 1.6732632423543772
const SCALE: f32 = 1.050_701; // 1.0507009873554805

fn selu<R: Real>(x: R) -> R {
    // exp_m1 is only evaluated on the negative branch, so it never overflows.
    let y = if x > 0.0 { x } else { exp_m1(x) * ALPHA };
    y * SCALE
}

activation!(name = "selu", f = selu);
