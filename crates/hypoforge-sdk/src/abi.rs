//! The guest half of the plugin ABI. Hidden from authors: the export macros call into it.
//!
//! Everything crosses the boundary as `i32` offsets into linear memory and `f32` buffers;
//! the host allocates through `hf_alloc`, writes inputs, calls one batch function and reads
//! outputs. This module is the only place in a plugin that turns offsets into slices.

use core::cell::UnsafeCell;

use crate::{Matrix, Preprocessor};

/// Bumped whenever an export's name, signature or meaning changes.
pub const ABI_VERSION: u32 = 2;
/// Contents of the `hypoforge.abi` custom section.
pub const ABI_SECTION: [u8; 4] = ABI_VERSION.to_le_bytes();
/// The SDK version stamped into every plugin's metadata.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Total length of `parts` once concatenated.
pub const fn concat_len(parts: &[&str]) -> usize {
    let mut total = 0;
    let mut i = 0;
    while i < parts.len() {
        total += parts[i].len();
        i += 1;
    }
    total
}

/// `parts` concatenated into an array, for a custom section built at compile time.
pub const fn concat_bytes<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        let bytes = parts[i].as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            out[at] = bytes[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// Interior-mutable global storage for a plugin's fitted state. A WebAssembly instance runs
/// one call at a time on one thread, which is what makes the `Sync` claim sound.
#[derive(Debug)]
pub struct Slot<T>(UnsafeCell<Option<T>>);

// SAFETY: plugins run single-threaded inside one instance; there is no concurrent access.
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    pub const fn new() -> Self {
        Slot(UnsafeCell::new(None))
    }
    fn set(&self, value: T) {
        // SAFETY: single-threaded, and no reference from `get` outlives the export call.
        unsafe { *self.0.get() = Some(value) }
    }
    fn get(&self) -> Option<&T> {
        // SAFETY: as above.
        unsafe { (*self.0.get()).as_ref() }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

const ALIGN: usize = 16;

/// Allocate `bytes` for the host; 0 when impossible.
pub fn alloc(bytes: i32) -> i32 {
    let Ok(size) = usize::try_from(bytes) else {
        return 0;
    };
    let Ok(layout) = core::alloc::Layout::from_size_align(size.max(1), ALIGN) else {
        return 0;
    };
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { alloc::alloc::alloc(layout) };
    ptr as usize as i32
}

/// Free a block from [`alloc`] of the same size.
pub fn free(ptr: i32, bytes: i32) {
    let Ok(size) = usize::try_from(bytes) else {
        return;
    };
    if ptr == 0 {
        return;
    }
    if let Ok(layout) = core::alloc::Layout::from_size_align(size.max(1), ALIGN) {
        // SAFETY: the host hands back what `alloc` gave it, with the same size.
        unsafe { alloc::alloc::dealloc(ptr as u32 as usize as *mut u8, layout) }
    }
}

fn buffer<'a>(ptr: i32, len: usize) -> &'a [f32] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the host passes a buffer it allocated through `alloc` with room for `len`
    // floats; a lying host can only corrupt this instance's own sandboxed memory.
    unsafe { core::slice::from_raw_parts(ptr as u32 as usize as *const f32, len) }
}

fn buffer_mut<'a>(ptr: i32, len: usize) -> &'a mut [f32] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: as in `buffer`; the host passes input and output ranges that do not overlap.
    unsafe { core::slice::from_raw_parts_mut(ptr as u32 as usize as *mut f32, len) }
}

fn dims(rows: i32, cols: i32) -> Option<(usize, usize, usize)> {
    let r = usize::try_from(rows).ok()?;
    let c = usize::try_from(cols).ok()?;
    Some((r, c, r.checked_mul(c)?))
}

/// Status codes returned by exports that can refuse a call.
pub mod status {
    pub const OK: i32 = 0;
    pub const BAD_ARGUMENTS: i32 = -1;
    pub const NOT_FITTED: i32 = -2;
    pub const WIDTH_MISMATCH: i32 = -3;
}

/// `out[i] = f(input[i])` for `n` elements.
pub fn activation_apply(input: i32, output: i32, n: i32, f: impl Fn(f32) -> f32) -> i32 {
    let Ok(n) = usize::try_from(n) else {
        return status::BAD_ARGUMENTS;
    };
    let (x, y) = (buffer(input, n), buffer_mut(output, n));
    for (y, &x) in y.iter_mut().zip(x) {
        *y = f(x);
    }
    status::OK
}

/// `out[i] = f(input[i])` and `slope[i] = f'(input[i])` for `n` elements, from one evaluation
/// of `both` per element (a dual number carries both).
pub fn activation_apply_both(
    input: i32,
    output: i32,
    slope: i32,
    n: i32,
    both: impl Fn(f32) -> (f32, f32),
) -> i32 {
    let Ok(n) = usize::try_from(n) else {
        return status::BAD_ARGUMENTS;
    };
    let (x, y, dy) = (
        buffer(input, n),
        buffer_mut(output, n),
        buffer_mut(slope, n),
    );
    for ((y, dy), &x) in y.iter_mut().zip(dy.iter_mut()).zip(x) {
        (*y, *dy) = both(x);
    }
    status::OK
}

/// The state a preprocessor keeps between `fit` and `transform`.
#[derive(Debug)]
pub struct Fitted<T> {
    state: T,
    input_width: usize,
    output_width: usize,
}

pub fn preprocessor_fit<T: Preprocessor>(
    slot: &Slot<Fitted<T>>,
    data: i32,
    rows: i32,
    cols: i32,
) -> i32 {
    let Some((r, c, len)) = dims(rows, cols) else {
        return status::BAD_ARGUMENTS;
    };
    let Some(train) = Matrix::new(r, c, buffer(data, len)) else {
        return status::BAD_ARGUMENTS;
    };
    let state = T::fit(train);
    let output_width = state.output_width(c);
    slot.set(Fitted {
        state,
        input_width: c,
        output_width,
    });
    status::OK
}

pub fn preprocessor_width<T: Preprocessor>(slot: &Slot<Fitted<T>>) -> i32 {
    match slot.get() {
        Some(f) => i32::try_from(f.output_width).unwrap_or(status::BAD_ARGUMENTS),
        None => status::NOT_FITTED,
    }
}

pub fn preprocessor_transform<T: Preprocessor>(
    slot: &Slot<Fitted<T>>,
    data: i32,
    rows: i32,
    cols: i32,
    out: i32,
) -> i32 {
    let Some(fitted) = slot.get() else {
        return status::NOT_FITTED;
    };
    let Some((r, c, len)) = dims(rows, cols) else {
        return status::BAD_ARGUMENTS;
    };
    if c != fitted.input_width {
        return status::WIDTH_MISMATCH;
    }
    let Some(out_len) = r.checked_mul(fitted.output_width) else {
        return status::BAD_ARGUMENTS;
    };
    let input = buffer(data, len);
    let output = buffer_mut(out, out_len);
    let width = fitted.output_width.max(1);
    for (row, out_row) in input
        .chunks_exact(c.max(1))
        .zip(output.chunks_exact_mut(width))
    {
        fitted.state.transform_row(row, out_row);
    }
    status::OK
}

pub fn regularizer_penalty(
    data: i32,
    rows: i32,
    cols: i32,
    penalty: impl Fn(Matrix<'_>) -> f32,
) -> f32 {
    match dims(rows, cols).and_then(|(r, c, len)| Matrix::new(r, c, buffer(data, len))) {
        Some(w) => penalty(w),
        None => f32::NAN,
    }
}

pub fn regularizer_gradient(
    data: i32,
    rows: i32,
    cols: i32,
    out: i32,
    gradient: impl Fn(Matrix<'_>, &mut [f32]),
) -> i32 {
    let Some((r, c, len)) = dims(rows, cols) else {
        return status::BAD_ARGUMENTS;
    };
    let Some(w) = Matrix::new(r, c, buffer(data, len)) else {
        return status::BAD_ARGUMENTS;
    };
    gradient(w, buffer_mut(out, len));
    status::OK
}

/// Where the panic handler leaves its message: a little-endian `u32` length, then UTF-8.
#[cfg(target_arch = "wasm32")]
mod panic_report {
    use core::cell::UnsafeCell;
    use core::fmt::Write;

    const CAPACITY: usize = 1024;

    pub struct Report(UnsafeCell<[u8; 4 + CAPACITY]>);
    // SAFETY: single-threaded instance.
    unsafe impl Sync for Report {}
    pub static REPORT: Report = Report(UnsafeCell::new([0; 4 + CAPACITY]));

    struct Writer<'a> {
        buf: &'a mut [u8],
        len: usize,
    }

    impl Write for Writer<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for &b in s.as_bytes() {
                if self.len < CAPACITY {
                    self.buf[4 + self.len] = b;
                    self.len += 1;
                }
            }
            Ok(())
        }
    }

    #[panic_handler]
    fn on_panic(info: &core::panic::PanicInfo<'_>) -> ! {
        // SAFETY: single-threaded; nothing else holds the buffer during a panic.
        let buf = unsafe { &mut *REPORT.0.get() };
        let mut w = Writer { buf, len: 0 };
        let _ = write!(w, "{}", info.message());
        if let Some(loc) = info.location() {
            let _ = write!(w, " at line {}, column {}", loc.line(), loc.column());
        }
        let len = w.len as u32;
        buf[..4].copy_from_slice(&len.to_le_bytes());
        core::arch::wasm32::unreachable()
    }

    pub fn address() -> i32 {
        REPORT.0.get() as usize as i32
    }
}

/// Offset of the panic report (length-prefixed UTF-8); 0 outside WebAssembly.
pub fn panic_message() -> i32 {
    #[cfg(target_arch = "wasm32")]
    {
        panic_report::address()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_concatenates_at_compile_time() {
        const PARTS: &[&str] = &["kind=", "activation", "\n"];
        const BYTES: [u8; concat_len(PARTS)] = concat_bytes(PARTS);
        assert_eq!(&BYTES, b"kind=activation\n");
    }
}
