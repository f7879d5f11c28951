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
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[path = "native.rs"]
pub mod __native;
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
        #[cfg(all(hypoforge_native, not(target_arch = "wasm32")))]
        const _: () = {
            struct Exports;
            impl $crate::__native::PreprocessorExports for Exports {
                const META: &'static [u8] = &$crate::__export_meta!("preprocessor", $name, "none");
                type State = $t;
            }
            static TABLE: $crate::__native::Table =
                $crate::__native::preprocessor_table::<Exports>();
            #[unsafe(no_mangle)]
            pub extern "C" fn hypoforge_native_table() -> &'static $crate::__native::Table {
                &TABLE
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
        #[cfg(all(hypoforge_native, not(target_arch = "wasm32")))]
        const _: () = {
            struct Exports;
            impl $crate::__native::RegularizerExports for Exports {
                const META: &'static [u8] = &$crate::__export_meta!("regularizer", $name, "author");
                fn penalty(w: $crate::Matrix<'_>) -> f32 {
                    $p(w)
                }
                fn gradient(w: $crate::Matrix<'_>, out: &mut [f32]) {
                    $g(w, out)
                }
            }
            static TABLE: $crate::__native::Table =
                $crate::__native::regularizer_table::<Exports>();
            #[unsafe(no_mangle)]
            pub extern "C" fn hypoforge_native_table() -> &'static $crate::__native::Table {
                &TABLE
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
        #[cfg(all(hypoforge_native, not(target_arch = "wasm32")))]
        const _: () = {
            struct Exports;
            impl $crate::__native::ActivationExports for Exports {
                const META: &'static [u8] =
                    &$crate::__export_meta!("activation", $name, $derivative);
                fn forward(x: f32) -> f32 {
                    ($forward)(x)
                }
                fn derivative(x: f32) -> f32 {
                    ($backward)(x)
                }
                fn both(x: f32) -> (f32, f32) {
                    ($both)(x)
                }
            }
            static TABLE: $crate::__native::Table = $crate::__native::activation_table::<Exports>();
            #[unsafe(no_mangle)]
            pub extern "C" fn hypoforge_native_table() -> &'static $crate::__native::Table {
                &TABLE
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

            #[unsafe(link_section = "hypoforge.meta")]
            #[used]
    static META_SECTION: [u8; $crate::__export_meta!(len $kind, $name, $derivative)] =
                $crate::__export_meta!($kind, $name, $derivative);

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

/// The `hypoforge.meta` lines of a plugin, as a byte array (or, after `len`, its length).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_meta {
    (@parts $kind:literal, $name:literal, $derivative:literal) => {
        &[
            "kind=",
            $kind,
            "\nname=",
            $name,
            "\nderivative=",
            $derivative,
            "\nsdk=",
            $crate::__abi::SDK_VERSION,
            "\n",
        ]
    };
    (len $kind:literal, $name:literal, $derivative:literal) => {
        $crate::__abi::concat_len($crate::__export_meta!(@parts $kind, $name, $derivative))
    };
    ($kind:literal, $name:literal, $derivative:literal) => {
        $crate::__abi::concat_bytes::<{ $crate::__export_meta!(len $kind, $name, $derivative) }>(
            $crate::__export_meta!(@parts $kind, $name, $derivative),
        )
    };
}
