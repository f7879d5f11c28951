//! The native half of the plugin ABI: outside WebAssembly, the export macros emit one symbol,
//! [`TABLE_SYMBOL`], returning a `#[repr(C)]` [`Table`] of C functions. Hidden from authors.
//!
//! A native plugin runs only in a worker process, only after its WebAssembly build passed
//! validation, and only once a differential test found it computes the same bits. Every
//! function here catches the author's panics, so none unwinds into the host; the message is
//! kept for [`Table::panic_message`]. Every function that takes a pointer is `unsafe`, so that
//! author code (which is `forbid(unsafe_code)`) cannot call one.

extern crate std;

use alloc::boxed::Box;
use alloc::string::String;
use core::cell::RefCell;
use core::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::{Matrix, Preprocessor};

/// Bumped whenever the table's layout or a function's meaning changes.
pub const NATIVE_ABI_VERSION: u32 = 1;
/// The one symbol a native plugin exports: `extern "C" fn() -> &'static Table`.
pub const TABLE_SYMBOL: &str = "hypoforge_native_table";

/// Status codes: those of the WebAssembly ABI, plus a caught panic.
pub mod status {
    pub use crate::__abi::status::*;
    /// The author's code panicked; [`super::Table::panic_message`] says why.
    pub const PANICKED: i32 = -100;
}

/// Kinds as the table names them.
pub mod kind {
    pub const ACTIVATION: u32 = 1;
    pub const PREPROCESSOR: u32 = 2;
    pub const REGULARIZER: u32 = 3;
}

/// `f32` buffers in, `f32` buffers out.
pub type ActivationFn = unsafe extern "C" fn(x: *const f32, y: *mut f32, n: usize) -> i32;
pub type ActivationBothFn =
    unsafe extern "C" fn(x: *const f32, y: *mut f32, dy: *mut f32, n: usize) -> i32;
/// Fits on `rows × cols` and stores an owned state in `*state` (freed by [`PreFreeFn`]).
pub type PreFitFn = unsafe extern "C" fn(
    data: *const f32,
    rows: usize,
    cols: usize,
    state: *mut *mut c_void,
) -> i32;
/// The fitted output width, or a negative status.
pub type PreWidthFn = unsafe extern "C" fn(state: *const c_void) -> i64;
pub type PreTransformFn = unsafe extern "C" fn(
    state: *const c_void,
    data: *const f32,
    rows: usize,
    cols: usize,
    out: *mut f32,
) -> i32;
pub type PreFreeFn = unsafe extern "C" fn(state: *mut c_void);
/// Writes the penalty to `*out`.
pub type RegPenaltyFn =
    unsafe extern "C" fn(data: *const f32, rows: usize, cols: usize, out: *mut f32) -> i32;
pub type RegGradientFn =
    unsafe extern "C" fn(data: *const f32, rows: usize, cols: usize, out: *mut f32) -> i32;
/// Copies the last caught panic's message (UTF-8) into `out`, returns its full length.
pub type PanicMessageFn = unsafe extern "C" fn(out: *mut u8, capacity: usize) -> usize;

/// What a native plugin exports. The functions of other kinds are `None`.
#[repr(C)]
#[derive(Debug)]
pub struct Table {
    pub abi_version: u32,
    pub kind: u32,
    /// The same `key=value` lines as the WebAssembly module's `hypoforge.meta` section.
    pub meta: *const u8,
    pub meta_len: usize,
    pub act_forward: Option<ActivationFn>,
    pub act_derivative: Option<ActivationFn>,
    pub act_forward_derivative: Option<ActivationBothFn>,
    pub pre_fit: Option<PreFitFn>,
    pub pre_width: Option<PreWidthFn>,
    pub pre_transform: Option<PreTransformFn>,
    pub pre_free: Option<PreFreeFn>,
    pub reg_penalty: Option<RegPenaltyFn>,
    pub reg_gradient: Option<RegGradientFn>,
    pub panic_message: PanicMessageFn,
}

// SAFETY: the table is immutable; `meta` points at `'static` bytes.
unsafe impl Sync for Table {}

impl Table {
    const fn empty(kind: u32, meta: &'static [u8]) -> Table {
        Table {
            abi_version: NATIVE_ABI_VERSION,
            kind,
            meta: meta.as_ptr(),
            meta_len: meta.len(),
            act_forward: None,
            act_derivative: None,
            act_forward_derivative: None,
            pre_fit: None,
            pre_width: None,
            pre_transform: None,
            pre_free: None,
            reg_penalty: None,
            reg_gradient: None,
            panic_message,
        }
    }
}

/// An activation, as the export macro describes it.
pub trait ActivationExports {
    const META: &'static [u8];
    fn forward(x: f32) -> f32;
    fn derivative(x: f32) -> f32;
    fn both(x: f32) -> (f32, f32);
}

/// A preprocessor, as the export macro describes it.
pub trait PreprocessorExports {
    const META: &'static [u8];
    type State: Preprocessor;
}

/// A regularizer, as the export macro describes it.
pub trait RegularizerExports {
    const META: &'static [u8];
    fn penalty(w: Matrix<'_>) -> f32;
    fn gradient(w: Matrix<'_>, out: &mut [f32]);
}

pub const fn activation_table<A: ActivationExports>() -> Table {
    let mut t = Table::empty(kind::ACTIVATION, A::META);
    t.act_forward = Some(act_forward::<A>);
    t.act_derivative = Some(act_derivative::<A>);
    t.act_forward_derivative = Some(act_forward_derivative::<A>);
    t
}

pub const fn preprocessor_table<P: PreprocessorExports>() -> Table {
    let mut t = Table::empty(kind::PREPROCESSOR, P::META);
    t.pre_fit = Some(pre_fit::<P>);
    t.pre_width = Some(pre_width::<P>);
    t.pre_transform = Some(pre_transform::<P>);
    t.pre_free = Some(pre_free::<P>);
    t
}

pub const fn regularizer_table<R: RegularizerExports>() -> Table {
    let mut t = Table::empty(kind::REGULARIZER, R::META);
    t.reg_penalty = Some(reg_penalty::<R>);
    t.reg_gradient = Some(reg_gradient::<R>);
    t
}

std::thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `body`, turning a panic into [`status::PANICKED`] with its message kept, formatted as
/// the WebAssembly panic handler formats it.
fn guarded(body: impl FnOnce() -> i32) -> i32 {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            use core::fmt::Write;
            let mut message = String::new();
            let text = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("Box<dyn Any>");
            message.push_str(text);
            if let Some(loc) = info.location() {
                let _ = write!(message, " at line {}, column {}", loc.line(), loc.column());
            }
            LAST_PANIC.with(|last| *last.borrow_mut() = message);
        }));
    });
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(status::PANICKED)
}

unsafe extern "C" fn panic_message(out: *mut u8, capacity: usize) -> usize {
    LAST_PANIC.with(|last| {
        let last = last.borrow();
        let n = last.len().min(capacity);
        if n > 0 {
            // SAFETY: the host passes a buffer of `capacity` bytes.
            unsafe { core::ptr::copy_nonoverlapping(last.as_ptr(), out, n) }
        }
        last.len()
    })
}

/// # Safety
/// `ptr` is valid for `len` reads (or `len` is 0).
unsafe fn buffer<'a>(ptr: *const f32, len: usize) -> &'a [f32] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts(ptr, len) }
}

/// # Safety
/// `ptr` is valid for `len` writes and overlaps no other buffer of the call (or `len` is 0).
unsafe fn buffer_mut<'a>(ptr: *mut f32, len: usize) -> &'a mut [f32] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts_mut(ptr, len) }
}

/// `out[i] = f(x[i])` over `n` elements, the author's panic caught.
///
/// # Safety
/// `x` and `out` hold `n` floats each and do not overlap.
unsafe fn elementwise(x: *const f32, out: *mut f32, n: usize, f: impl Fn(f32) -> f32) -> i32 {
    // SAFETY: the caller's contract.
    let (x, out) = unsafe { (buffer(x, n), buffer_mut(out, n)) };
    guarded(|| {
        for (out, &x) in out.iter_mut().zip(x) {
            *out = f(x);
        }
        status::OK
    })
}

unsafe extern "C" fn act_forward<A: ActivationExports>(
    x: *const f32,
    y: *mut f32,
    n: usize,
) -> i32 {
    // SAFETY: the host passes `n`-element buffers that do not overlap.
    unsafe { elementwise(x, y, n, A::forward) }
}

unsafe extern "C" fn act_derivative<A: ActivationExports>(
    x: *const f32,
    dy: *mut f32,
    n: usize,
) -> i32 {
    // SAFETY: as in `act_forward`.
    unsafe { elementwise(x, dy, n, A::derivative) }
}

unsafe extern "C" fn act_forward_derivative<A: ActivationExports>(
    x: *const f32,
    y: *mut f32,
    dy: *mut f32,
    n: usize,
) -> i32 {
    // SAFETY: the host passes `n`-element buffers that do not overlap.
    let (x, y, dy) = unsafe { (buffer(x, n), buffer_mut(y, n), buffer_mut(dy, n)) };
    guarded(|| {
        for ((y, dy), &x) in y.iter_mut().zip(dy.iter_mut()).zip(x) {
            (*y, *dy) = A::both(x);
        }
        status::OK
    })
}

/// What `pre_fit` hands the host, behind an opaque pointer.
struct Fitted<T> {
    state: T,
    input_width: usize,
    output_width: usize,
}

unsafe extern "C" fn pre_fit<P: PreprocessorExports>(
    data: *const f32,
    rows: usize,
    cols: usize,
    state: *mut *mut c_void,
) -> i32 {
    let Some(len) = rows.checked_mul(cols) else {
        return status::BAD_ARGUMENTS;
    };
    // SAFETY: the host passes a `rows × cols` buffer.
    let data = unsafe { buffer(data, len) };
    let mut fitted = None;
    let code = guarded(|| {
        let Some(train) = Matrix::new(rows, cols, data) else {
            return status::BAD_ARGUMENTS;
        };
        let s = P::State::fit(train);
        let output_width = s.output_width(cols);
        fitted = Some(Box::new(Fitted {
            state: s,
            input_width: cols,
            output_width,
        }));
        status::OK
    });
    if let Some(fitted) = fitted {
        // SAFETY: the host passes a pointer to write the state's address to.
        unsafe { *state = Box::into_raw(fitted).cast() };
    }
    code
}

unsafe extern "C" fn pre_width<P: PreprocessorExports>(state: *const c_void) -> i64 {
    if state.is_null() {
        return status::NOT_FITTED.into();
    }
    // SAFETY: a non-null state comes from `pre_fit` of this plugin and is not yet freed.
    let fitted = unsafe { &*state.cast::<Fitted<P::State>>() };
    i64::try_from(fitted.output_width).unwrap_or(status::BAD_ARGUMENTS.into())
}

unsafe extern "C" fn pre_transform<P: PreprocessorExports>(
    state: *const c_void,
    data: *const f32,
    rows: usize,
    cols: usize,
    out: *mut f32,
) -> i32 {
    if state.is_null() {
        return status::NOT_FITTED;
    }
    // SAFETY: as in `pre_width`.
    let fitted = unsafe { &*state.cast::<Fitted<P::State>>() };
    if cols != fitted.input_width {
        return status::WIDTH_MISMATCH;
    }
    let (Some(len), Some(out_len)) = (
        rows.checked_mul(cols),
        rows.checked_mul(fitted.output_width),
    ) else {
        return status::BAD_ARGUMENTS;
    };
    // SAFETY: the host passes a `rows × cols` input and a `rows × output_width` output.
    let (input, output) = unsafe { (buffer(data, len), buffer_mut(out, out_len)) };
    let width = fitted.output_width.max(1);
    guarded(|| {
        for (row, out_row) in input
            .chunks_exact(cols.max(1))
            .zip(output.chunks_exact_mut(width))
        {
            fitted.state.transform_row(row, out_row);
        }
        status::OK
    })
}

unsafe extern "C" fn pre_free<P: PreprocessorExports>(state: *mut c_void) {
    if !state.is_null() {
        // SAFETY: the state came from `Box::into_raw` in `pre_fit` and is freed once.
        drop(unsafe { Box::from_raw(state.cast::<Fitted<P::State>>()) });
    }
}

unsafe extern "C" fn reg_penalty<R: RegularizerExports>(
    data: *const f32,
    rows: usize,
    cols: usize,
    out: *mut f32,
) -> i32 {
    let Some(len) = rows.checked_mul(cols) else {
        return status::BAD_ARGUMENTS;
    };
    // SAFETY: the host passes a `rows × cols` buffer.
    let data = unsafe { buffer(data, len) };
    let mut penalty = f32::NAN;
    let code = guarded(|| match Matrix::new(rows, cols, data) {
        Some(w) => {
            penalty = R::penalty(w);
            status::OK
        }
        None => status::BAD_ARGUMENTS,
    });
    // SAFETY: the host passes a place for one float.
    unsafe { *out = penalty };
    code
}

unsafe extern "C" fn reg_gradient<R: RegularizerExports>(
    data: *const f32,
    rows: usize,
    cols: usize,
    out: *mut f32,
) -> i32 {
    let Some(len) = rows.checked_mul(cols) else {
        return status::BAD_ARGUMENTS;
    };
    // SAFETY: the host passes two `rows × cols` buffers that do not overlap.
    let (data, grad) = unsafe { (buffer(data, len), buffer_mut(out, len)) };
    guarded(|| match Matrix::new(rows, cols, data) {
        Some(w) => {
            R::gradient(w, grad);
            status::OK
        }
        None => status::BAD_ARGUMENTS,
    })
}
