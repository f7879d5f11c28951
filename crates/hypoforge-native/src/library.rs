//! A native plugin loaded into this process, and its typed handles in the model's slots.
//!
//! Only a worker process loads one (and benchmarks, on the baseline panel): a native plugin is
//! the author's code running with the process's full rights, kept honest by the source policy,
//! `forbid(unsafe_code)` and the SDK alone. Every failure mirrors the sandbox's error for the
//! same behaviour, so a trial fails with the same class and message on either engine.

use std::ffi::c_void;
use std::path::Path;

use hypoforge_eval::model::{Activation, Regularizer, RunFailure};
use hypoforge_eval::trial::Preprocess;
use hypoforge_sandbox::SandboxError;
use hypoforge_sdk::__native::{NATIVE_ABI_VERSION, TABLE_SYMBOL, Table, kind, status};
use hypoforge_spec::{ComponentKind, PluginMeta};

use crate::probe::Handle;

/// Why a native library cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load {path}: {message}")]
    Open { path: String, message: String },
    #[error("{path} does not export `{TABLE_SYMBOL}`: it was not built by hypoforge-compile")]
    NoTable { path: String },
    #[error("the library speaks native ABI version {found}; this host speaks {NATIVE_ABI_VERSION}")]
    AbiVersion { found: u32 },
    #[error("the library's table is malformed: {0}")]
    Malformed(String),
}

/// A loaded native plugin. The library stays loaded for the life of the process: nothing here
/// ever unloads it, so the table and its functions stay valid.
#[derive(Debug)]
pub struct NativePlugin {
    table: &'static Table,
    meta: PluginMeta,
}

impl NativePlugin {
    /// Load the library at `path` and check its table.
    ///
    /// # Safety
    /// Loading runs the library's initializers and trusts its table: `path` must be a library
    /// that `hypoforge_compile::Compiler::compile_native` built, whose WebAssembly build passed
    /// validation.
    pub unsafe fn load(path: &Path) -> Result<NativePlugin, LoadError> {
        let shown = path.display().to_string();
        // SAFETY: the caller's contract.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Open {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        // SAFETY: the symbol has this signature in every library the SDK's macros emit.
        let table = unsafe {
            let get: libloading::Symbol<'_, extern "C" fn() -> &'static Table> = library
                .get(TABLE_SYMBOL.as_bytes())
                .map_err(|_| LoadError::NoTable {
                    path: shown.clone(),
                })?;
            get()
        };
        // Never unloaded: the table and every function in it live as long as the process.
        std::mem::forget(library);
        if table.abi_version != NATIVE_ABI_VERSION {
            return Err(LoadError::AbiVersion {
                found: table.abi_version,
            });
        }
        // SAFETY: `meta` and `meta_len` describe a `'static` byte string of the library.
        let meta_bytes = unsafe { std::slice::from_raw_parts(table.meta, table.meta_len) };
        let meta =
            PluginMeta::parse(meta_bytes).map_err(|e| LoadError::Malformed(e.to_string()))?;
        let complete = match (table.kind, meta.kind) {
            (kind::ACTIVATION, ComponentKind::Activation) => {
                table.act_forward.is_some()
                    && table.act_derivative.is_some()
                    && table.act_forward_derivative.is_some()
            }
            (kind::PREPROCESSOR, ComponentKind::Preprocessor) => {
                table.pre_fit.is_some()
                    && table.pre_width.is_some()
                    && table.pre_transform.is_some()
                    && table.pre_free.is_some()
            }
            (kind::REGULARIZER, ComponentKind::Regularizer) => {
                table.reg_penalty.is_some() && table.reg_gradient.is_some()
            }
            _ => false,
        };
        if !complete {
            return Err(LoadError::Malformed(format!(
                "kind {} with metadata of a {} lacks functions of its kind",
                table.kind, meta.kind
            )));
        }
        Ok(NativePlugin { table, meta })
    }

    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }

    /// An activation handle; `None` for another kind.
    pub fn activation(&self) -> Option<NativeActivation<'_>> {
        (self.meta.kind == ComponentKind::Activation).then_some(NativeActivation { plugin: self })
    }

    /// A fresh handle of the plugin's kind.
    pub(crate) fn handle(&self) -> Handle<'_> {
        match self.meta.kind {
            ComponentKind::Activation => {
                Handle::Activation(Box::new(NativeActivation { plugin: self }))
            }
            ComponentKind::Preprocessor => Handle::Preprocessor(Box::new(NativePreprocessor {
                plugin: self,
                state: std::ptr::null_mut(),
                fitted: None,
            })),
            ComponentKind::Regularizer => {
                Handle::Regularizer(Box::new(NativeRegularizer { plugin: self }))
            }
        }
    }

    /// The error for a status code `what` returned, as the sandbox words it.
    fn check(&self, code: i32, what: &str) -> Result<(), RunFailure> {
        if code == status::OK {
            return Ok(());
        }
        let error = if code == status::PANICKED {
            let mut buf = vec![0u8; 1024];
            // SAFETY: the buffer has the capacity passed.
            let len = unsafe { (self.table.panic_message)(buf.as_mut_ptr(), buf.len()) };
            buf.truncate(len.min(buf.len()));
            SandboxError::Panic {
                message: Some(String::from_utf8_lossy(&buf).into_owned()),
            }
        } else {
            SandboxError::BadAbi(format!(
                "{what} returned status {code} ({})",
                hypoforge_spec::abi::status::describe(code)
            ))
        };
        Err(failure(error))
    }
}

fn failure(e: SandboxError) -> RunFailure {
    RunFailure {
        class: e.class(),
        message: e.to_string(),
    }
}

/// An activation in the model's slot.
#[derive(Debug)]
pub struct NativeActivation<'a> {
    plugin: &'a NativePlugin,
}

impl Activation for NativeActivation<'_> {
    fn forward(&mut self, x: &[f32], y: &mut [f32]) -> Result<(), RunFailure> {
        assert_eq!(x.len(), y.len(), "input and output lengths differ");
        let f = self.plugin.table.act_forward.expect("checked at load");
        // SAFETY: both buffers hold `x.len()` floats and do not overlap.
        let code = unsafe { f(x.as_ptr(), y.as_mut_ptr(), x.len()) };
        self.plugin
            .check(code, hypoforge_spec::abi::exports::ACT_FORWARD)
    }

    fn derivative(&mut self, x: &[f32], dy: &mut [f32]) -> Result<(), RunFailure> {
        assert_eq!(x.len(), dy.len(), "input and output lengths differ");
        let f = self.plugin.table.act_derivative.expect("checked at load");
        // SAFETY: as in `forward`.
        let code = unsafe { f(x.as_ptr(), dy.as_mut_ptr(), x.len()) };
        self.plugin
            .check(code, hypoforge_spec::abi::exports::ACT_DERIVATIVE)
    }

    fn forward_with_derivative(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        dy: &mut [f32],
    ) -> Result<(), RunFailure> {
        assert!(
            x.len() == y.len() && x.len() == dy.len(),
            "input and output lengths differ"
        );
        let f = self
            .plugin
            .table
            .act_forward_derivative
            .expect("checked at load");
        // SAFETY: three buffers of `x.len()` floats, none overlapping.
        let code = unsafe { f(x.as_ptr(), y.as_mut_ptr(), dy.as_mut_ptr(), x.len()) };
        self.plugin
            .check(code, hypoforge_spec::abi::exports::ACT_FORWARD_DERIVATIVE)
    }
}

/// A preprocessor in the data slot; its fitted state is freed with it.
#[derive(Debug)]
pub struct NativePreprocessor<'a> {
    plugin: &'a NativePlugin,
    state: *mut c_void,
    /// (input width, output width) once fitted.
    fitted: Option<(usize, usize)>,
}

impl NativePreprocessor<'_> {
    fn release(&mut self) {
        if !self.state.is_null() {
            let free = self.plugin.table.pre_free.expect("checked at load");
            // SAFETY: the state came from this plugin's `pre_fit` and is freed once.
            unsafe { free(self.state) };
            self.state = std::ptr::null_mut();
        }
        self.fitted = None;
    }
}

impl Drop for NativePreprocessor<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Preprocess for NativePreprocessor<'_> {
    fn fit(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<usize, RunFailure> {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix size disagrees with its shape"
        );
        self.release();
        let table = self.plugin.table;
        let mut state = std::ptr::null_mut();
        // SAFETY: a `rows × cols` buffer, and a place for the state.
        let code = unsafe {
            table.pre_fit.expect("checked at load")(data.as_ptr(), rows, cols, &mut state)
        };
        self.state = state;
        self.plugin
            .check(code, hypoforge_spec::abi::exports::PRE_FIT)?;
        // SAFETY: the state `pre_fit` just made.
        let width = unsafe { table.pre_width.expect("checked at load")(self.state) };
        let max = hypoforge_plugin::max_output_width(cols);
        let width = usize::try_from(width)
            .ok()
            .filter(|w| (1..=max).contains(w))
            .ok_or_else(|| {
                failure(SandboxError::BadAbi(format!(
                    "declared output width {width} for {cols} input columns is outside 1..={max}"
                )))
            })?;
        self.fitted = Some((cols, width));
        Ok(width)
    }

    fn transform(
        &mut self,
        data: &[f32],
        rows: usize,
        cols: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), RunFailure> {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix size disagrees with its shape"
        );
        let Some((fit_cols, width)) = self.fitted else {
            return Err(failure(SandboxError::BadAbi("transform before fit".into())));
        };
        if cols != fit_cols {
            return Err(failure(SandboxError::BadAbi(format!(
                "transform of a {cols}-column matrix after fitting {fit_cols} columns"
            ))));
        }
        let what = hypoforge_spec::abi::exports::PRE_TRANSFORM;
        out.clear();
        out.resize(rows * width, 0.0);
        let transform = self.plugin.table.pre_transform.expect("checked at load");
        let (plugin, state) = (self.plugin, self.state);
        collect(out, what, |out| {
            // SAFETY: the fitted state, a `rows × cols` input and a `rows × width` output.
            let code = unsafe { transform(state, data.as_ptr(), rows, cols, out.as_mut_ptr()) };
            plugin.check(code, what)
        })
    }
}

/// The sandbox's canaries (`hypoforge-plugin`): an output still holding one after the call was
/// not written, unless a second call under the other canary writes it.
const CANARY: u32 = 0x7fc0_beef;
const CANARY_CONFIRM: u32 = 0x7fd0_cafe;

/// Runs `call` on `out` filled with the canary and checks every output was written. An output
/// still holding the canary is unwritten or a NaN with those very bits; a second run under the
/// other canary tells the two apart, as the sandbox does.
fn collect(
    out: &mut [f32],
    what: &str,
    mut call: impl FnMut(&mut [f32]) -> Result<(), RunFailure>,
) -> Result<(), RunFailure> {
    for canary in [CANARY, CANARY_CONFIRM] {
        out.fill(f32::from_bits(canary));
        call(out)?;
        let left = out.iter().filter(|v| v.to_bits() == canary).count();
        if left == 0 {
            return Ok(());
        }
        if canary == CANARY_CONFIRM {
            return Err(failure(SandboxError::BadAbi(format!(
                "{what} left {left} of {} outputs unwritten",
                out.len()
            ))));
        }
    }
    Ok(())
}

/// A regularizer on every weight matrix.
#[derive(Debug)]
pub struct NativeRegularizer<'a> {
    plugin: &'a NativePlugin,
}

impl Regularizer for NativeRegularizer<'_> {
    fn penalty(&mut self, w: &[f32], rows: usize, cols: usize) -> Result<f32, RunFailure> {
        assert_eq!(w.len(), rows * cols, "matrix size disagrees with its shape");
        let mut value = f32::NAN;
        let f = self.plugin.table.reg_penalty.expect("checked at load");
        // SAFETY: a `rows × cols` buffer and a place for one float.
        let code = unsafe { f(w.as_ptr(), rows, cols, &mut value) };
        self.plugin
            .check(code, hypoforge_spec::abi::exports::REG_PENALTY)?;
        Ok(value)
    }

    fn gradient(
        &mut self,
        w: &[f32],
        rows: usize,
        cols: usize,
        grad: &mut [f32],
    ) -> Result<(), RunFailure> {
        assert_eq!(w.len(), rows * cols, "matrix size disagrees with its shape");
        assert_eq!(grad.len(), w.len(), "gradient and weights differ in size");
        let what = hypoforge_spec::abi::exports::REG_GRADIENT;
        let f = self.plugin.table.reg_gradient.expect("checked at load");
        let plugin = self.plugin;
        collect(grad, what, |grad| {
            // SAFETY: two `rows × cols` buffers that do not overlap.
            let code = unsafe { f(w.as_ptr(), rows, cols, grad.as_mut_ptr()) };
            plugin.check(code, what)
        })
    }
}
