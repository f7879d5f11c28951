//! The guest SDK that every hypothesis is written against.
//!
//! A hypothesis is one Rust file that writes a component and names it; the export macro emits
//! the plugin ABI (exports, the ABI-version custom section, metadata). No `unsafe`, no `std`:
//! `core`, this SDK and what it re-exports are all a hypothesis can use.
//!
//! ```
//! use hypoforge_sdk::prelude::*;
//!
//! // Written once over `Real`: the SDK derives f'(x) exactly with dual numbers.
//! fn swish<R: Real>(x: R) -> R {
//!     x * sigmoid(x)
//! }
//! activation!(name = "swish", f = swish);
//! ```
//!
//! A preprocessor implements [`Preprocessor`]; a regularizer gives a penalty and its gradient:
//!
//! ```
//! # use hypoforge_sdk::prelude::*;
//! fn l2(w: Matrix) -> f32 { 1e-4 * w.data().iter().map(|v| v * v).sum::<f32>() }
//! fn l2_grad(w: Matrix, g: &mut [f32]) { for (g, v) in g.iter_mut().zip(w.data()) { *g = 2e-4 * v } }
//! regularizer!(name = "l2", penalty = l2, gradient = l2_grad);
//! ```
#![no_std]

extern crate alloc;

#[doc(hidden)]
#[path = "abi.rs"]
pub mod __abi;
mod elementary;
pub mod math;
mod matrix;
mod real;
pub mod stats;

/// The `libm` crate, for `f64` math (`libm::sqrt`, `libm::exp`, ...) in a `no_std` plugin.
pub use libm;
pub use matrix::Matrix;
pub use real::{Dual, Real};

/// The ABI version this SDK emits (the `hypoforge.abi` custom section).
pub const ABI_VERSION: u32 = __abi::ABI_VERSION;

/// A data preprocessor: fitted on the training matrix only, then applied row by row.
///
/// Rows are transformed one at a time, so a transform cannot look at other rows (or at
/// validation statistics); all it knows is what `fit` kept.
pub trait Preprocessor: Sized {
    /// Learn whatever the transform needs from the training matrix (rows are samples).
    fn fit(train: Matrix<'_>) -> Self;
    /// Width of a transformed row, given the width of an input row. Defaults to the same width.
    fn output_width(&self, input_width: usize) -> usize {
        input_width
    }
    /// Transform one row; `out` has exactly `output_width(row.len())` elements.
    fn transform_row(&self, row: &[f32], out: &mut [f32]);
}

/// Everything a hypothesis needs: `use hypoforge_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::math::*;
    pub use crate::stats;
    pub use crate::{Dual, Matrix, Preprocessor, Real};
    pub use crate::{activation, preprocessor, regularizer};
    pub use alloc::boxed::Box;
    pub use alloc::vec;
    pub use alloc::vec::Vec;
    pub use libm;
}

/// Export an activation function.
///
/// - `activation!(name = "swish", f = swish)` where `fn swish<R: Real>(x: R) -> R`: the
///   derivative is exact, from dual numbers.
/// - `activation!(name = "mine", f = mine, df = mine_derivative)` with two `fn(f32) -> f32`:
///   the author's derivative, which validation checks against finite differences.
#[macro_export]
macro_rules! activation {
    (name = $name:literal, f = $f:path $(,)?) => {
        $crate::__export_activation!(
            $name,
            "dual",
            |x: f32| $f(x),
            |x: f32| $f($crate::Dual::var(x)).d,
            |x: f32| {
                let y = $f($crate::Dual::var(x));
                (y.v, y.d)
            }
        );
    };
    (name = $name:literal, f = $f:path, df = $df:path $(,)?) => {
        $crate::__export_activation!(
            $name,
            "author",
            |x: f32| $f(x),
            |x: f32| $df(x),
            |x: f32| ($f(x), $df(x))
        );
    };
}

/// Export a preprocessor: `preprocessor!(name = "standardize", state = Standardize)` where
/// `Standardize: Preprocessor`.
#[macro_export]
macro_rules! preprocessor {
    (name = $name:literal, state = $t:ty $(,)?) => {
        $crate::__export_common!("preprocessor", $name, "none");
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static STATE: $crate::__abi::Slot<$crate::__abi::Fitted<$t>> =
                $crate::__abi::Slot::new();
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_pre_fit(data: i32, rows: i32, cols: i32) -> i32 {
                $crate::__abi::preprocessor_fit::<$t>(&STATE, data, rows, cols)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_pre_width() -> i32 {
                $crate::__abi::preprocessor_width::<$t>(&STATE)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_pre_transform(data: i32, rows: i32, cols: i32, out: i32) -> i32 {
                $crate::__abi::preprocessor_transform::<$t>(&STATE, data, rows, cols, out)
            }
        };
    };
}

/// Export a regularizer: `regularizer!(name = "l2", penalty = p, gradient = g)` where
/// `fn p(w: Matrix) -> f32` is the penalty of one weight matrix and `fn g(w: Matrix, out: &mut [f32])`
/// writes its gradient (same shape as `w`). Validation checks `g` against finite differences of `p`.
#[macro_export]
macro_rules! regularizer {
    (name = $name:literal, penalty = $p:path, gradient = $g:path $(,)?) => {
        $crate::__export_common!("regularizer", $name, "author");
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_reg_penalty(data: i32, rows: i32, cols: i32) -> f32 {
                $crate::__abi::regularizer_penalty(data, rows, cols, |w| $p(w))
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_reg_gradient(data: i32, rows: i32, cols: i32, out: i32) -> i32 {
                $crate::__abi::regularizer_gradient(data, rows, cols, out, |w, g| $g(w, g))
            }
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_activation {
    ($name:literal, $derivative:literal, $forward:expr, $backward:expr, $both:expr) => {
        $crate::__export_common!("activation", $name, $derivative);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_act_forward(input: i32, output: i32, n: i32) -> i32 {
                $crate::__abi::activation_apply(input, output, n, $forward)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_act_derivative(input: i32, output: i32, n: i32) -> i32 {
                $crate::__abi::activation_apply(input, output, n, $backward)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_act_forward_derivative(
                input: i32,
                output: i32,
                slope: i32,
                n: i32,
            ) -> i32 {
                $crate::__abi::activation_apply_both(input, output, slope, n, $both)
            }
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_common {
    ($kind:literal, $name:literal, $derivative:literal) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(link_section = "hypoforge.abi")]
            #[used]
            static ABI: [u8; 4] = $crate::__abi::ABI_SECTION;

            const META: &[&str] = &[
                "kind=",
                $kind,
                "\nname=",
                $name,
                "\nderivative=",
                $derivative,
                "\nsdk=",
                $crate::__abi::SDK_VERSION,
                "\n",
            ];
            #[unsafe(link_section = "hypoforge.meta")]
            #[used]
            static META_SECTION: [u8; $crate::__abi::concat_len(META)] =
                $crate::__abi::concat_bytes(META);

            #[unsafe(no_mangle)]
            pub extern "C" fn hf_alloc(bytes: i32) -> i32 {
                $crate::__abi::alloc(bytes)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_free(ptr: i32, bytes: i32) {
                $crate::__abi::free(ptr, bytes)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn hf_panic_message() -> i32 {
                $crate::__abi::panic_message()
            }
        };
    };
}
