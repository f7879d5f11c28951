// GELU (Hendrycks & Gimpel, 2016), exact form: x * Phi(x), Phi the standard normal CDF.
use hypoforge_sdk::prelude::*;

fn gelu<R: Real>(x: R) -> R {
    x * normal_cdf(x)
}

activation!(name = "gelu", f = gelu);
