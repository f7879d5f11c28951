// Sine activation (Parascandolo et al., 2016, "Taming the waves"; Sitzmann et al., 2020, SIREN): sin(x).
use hypoforge_sdk::prelude::*;

fn sine<R: Real>(x: R) -> R {
    sin(x)
}

activation!(name = "sine", f = sine);
