// An activation with a hidden global counter: the same input gives different outputs on
// different calls.
use core::sync::atomic::{AtomicU32, Ordering};
use hypoforge_sdk::prelude::*;

static CALLS: AtomicU32 = AtomicU32::new(0);

fn drifting<R: Real>(x: R) -> R {
    let k = CALLS.fetch_add(1, Ordering::Relaxed);
    x + R::c((k % 7) as f32)
}

activation!(name = "drifting", f = drifting);
