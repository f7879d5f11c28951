// Softsign (Bergstra et al., 2009; Glorot & Bengio, 2010): x / (1 + |x|).
use hypoforge_sdk::prelude::*;

fn softsign<R: Real>(x: R) -> R {
    x / (abs(x) + 1.0)
}

activation!(name = "softsign", f = softsign);
