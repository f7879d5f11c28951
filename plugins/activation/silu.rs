// SiLU / swish (Elfwing et al., 2017; Ramachandran et al., 2017): x * sigmoid(x).
use hypoforge_sdk::prelude::*;

fn silu<R: Real>(x: R) -> R {
    x * sigmoid(x)
}

activation!(name = "silu", f = silu);
