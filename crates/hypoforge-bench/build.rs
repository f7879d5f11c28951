//! Copies the baseline activations the benchmarks build natively into `OUT_DIR`, with every
//! function marked `#[inline(always)]`.
//!
//! The guest build inlines a hypothesis's functions into its elementwise loop (an inline
//! threshold of 2000; `hypoforge-compile`'s `guest.rs`); the host's default threshold leaves a
//! function as large as GELU's dual-number derivative out of line and the loop unvectorized. The
//! native side of the overhead comparison is only fair when it is built for speed the same way.

use std::path::Path;

const NATIVE_ACTIVATIONS: [&str; 2] = ["gelu", "relu"];

fn main() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/activation");
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    for name in NATIVE_ACTIVATIONS {
        let path = plugins.join(format!("{name}.rs"));
        println!("cargo::rerun-if-changed={}", path.display());
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let inlined: String = source
            .lines()
            .map(|line| {
                if line.starts_with("fn ") {
                    format!("#[inline(always)]\n{line}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(Path::new(&out).join(format!("{name}.rs")), inlined)
            .expect("OUT_DIR is writable");
    }
}
