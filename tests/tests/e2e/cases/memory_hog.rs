// "Memoizes" every evaluation in a cache that only grows: 16 MiB more per step, forever.
use hypoforge_sdk::prelude::*;

fn hoarder<R: Real>(x: R) -> R {
    let mut keep: Vec<Vec<u8>> = Vec::new();
    loop {
        keep.push(core::hint::black_box(Vec::with_capacity(1 << 24)));
        if keep.len() == usize::MAX {
            return x;
        }
    }
}

activation!(name = "hoarder", f = hoarder);
