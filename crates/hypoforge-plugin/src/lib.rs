//! Typed host-side handles for each component kind over a sandboxed instance.
//!
//! [`Plugin::load`] checks a module's metadata and the exports its kind requires; the typed
//! handles ([`Activation`], [`Preprocessor`], [`Regularizer`]) copy buffers in and out of
//! guest memory and give each call an instruction budget proportional to its work.
//!
//! Every output buffer is filled with a canary and followed by a guard zone: a plugin that
//! leaves outputs unwritten or writes past its buffer is caught on the call that does it.

use hypoforge_sandbox::{Instance, Limits, LoadedModule, Sandbox, SandboxError, TypedFunc};
use hypoforge_spec::abi::{self, exports, status};
use hypoforge_spec::{ComponentKind, ErrorClass, PluginMeta};

/// NaN payloads arithmetic does not produce from the finite inputs a plugin is given. A plugin
/// can still write one on purpose (`f32::from_bits`), so a hit is confirmed with the other.
const CANARY: u32 = 0x7fc0_beef;
const CANARY_CONFIRM: u32 = 0x7fd0_cafe;
/// Floats of guard zone after every output buffer.
const GUARD_FLOATS: usize = 16;
/// Elements per activation call: the input, the output and the host's buffers of one tile
/// (8 KiB each) stay in the L1 cache through the copy in, the call and the read-back, which
/// on an 8192-element batch saved about a fifth of the sandbox's cost.
const TILE: usize = 2048;
/// Largest output width a preprocessor may declare: 16 outputs per input column, or 1024.
pub fn max_output_width(input_width: usize) -> usize {
    input_width.saturating_mul(16).max(1024)
}

/// Instruction budgets: `base + per_element × elements` per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub base: u64,
    pub per_element: u64,
}

impl Budget {
    fn for_elements(self, elements: usize) -> u64 {
        self.base
            .saturating_add(self.per_element.saturating_mul(elements as u64))
    }
}

/// Limits and budgets for a plugin instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginLimits {
    pub sandbox: Limits,
    /// Per activation call, per element.
    pub activation: Budget,
    /// Per `fit`, per input element.
    pub fit: Budget,
    /// Per `transform`, per input element × output width.
    pub transform: Budget,
    /// Per penalty or gradient call, per weight.
    pub regularizer: Budget,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            sandbox: Limits::default(),
            activation: Budget {
                base: 1_000_000,
                per_element: 50_000,
            },
            fit: Budget {
                base: 2_000_000_000,
                per_element: 100_000,
            },
            transform: Budget {
                base: 10_000_000,
                per_element: 2_000,
            },
            regularizer: Budget {
                base: 10_000_000,
                per_element: 10_000,
            },
        }
    }
}

/// Why a plugin could not be loaded or called.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(
        "the module has no `{}` section naming its kind and name",
        abi::META_SECTION
    )]
    MissingMeta,
    #[error("the module's metadata is unreadable: {0}")]
    BadMeta(String),
    #[error("expected a plugin of kind {expected}, found {found}")]
    KindMismatch {
        expected: ComponentKind,
        found: ComponentKind,
    },
}

impl PluginError {
    pub fn class(&self) -> ErrorClass {
        match self {
            PluginError::Sandbox(e) => e.class(),
            PluginError::MissingMeta | PluginError::BadMeta(_) => ErrorClass::BadModule,
            PluginError::KindMismatch { .. } => ErrorClass::KindMismatch,
        }
    }
}

/// A loaded plugin: a compiled module plus what it says about itself.
#[derive(Clone, Debug)]
pub struct Plugin {
    module: LoadedModule,
    meta: PluginMeta,
}

impl Plugin {
    /// Check and compile `wasm`. The metadata must parse and the kind's exports must exist.
    pub fn load(sandbox: &Sandbox, wasm: &[u8]) -> Result<Plugin, PluginError> {
        let module = sandbox.load(wasm)?;
        let meta_bytes = module
            .info()
            .meta
            .as_deref()
            .ok_or(PluginError::MissingMeta)?;
        let meta =
            PluginMeta::parse(meta_bytes).map_err(|e| PluginError::BadMeta(e.to_string()))?;
        let required: &[&str] = match meta.kind {
            ComponentKind::Activation => &[
                exports::ACT_FORWARD,
                exports::ACT_DERIVATIVE,
                exports::ACT_FORWARD_DERIVATIVE,
            ],
            ComponentKind::Preprocessor => {
                &[exports::PRE_FIT, exports::PRE_WIDTH, exports::PRE_TRANSFORM]
            }
            ComponentKind::Regularizer => &[exports::REG_PENALTY, exports::REG_GRADIENT],
        };
        let common = [exports::MEMORY, exports::ALLOC, exports::FREE];
        for name in common.iter().chain(required) {
            if !module.info().exports.iter().any(|e| e == name) {
                return Err(SandboxError::MissingExport {
                    name: (*name).into(),
                    expected: format!("required of every {}", meta.kind),
                }
                .into());
            }
        }
        Ok(Plugin { module, meta })
    }

    /// Like [`Plugin::load`], and the plugin must be of `kind`.
    pub fn load_kind(
        sandbox: &Sandbox,
        wasm: &[u8],
        kind: ComponentKind,
    ) -> Result<Plugin, PluginError> {
        let plugin = Plugin::load(sandbox, wasm)?;
        plugin.expect(kind)?;
        Ok(plugin)
    }

    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }

    fn instance(&self, sandbox: &Sandbox, limits: &PluginLimits) -> Result<Guest, PluginError> {
        Ok(Guest {
            instance: sandbox.instantiate(&self.module, limits.sandbox)?,
            buffers: Vec::new(),
            primed: None,
        })
    }

    /// A fresh activation instance.
    pub fn activation(
        &self,
        sandbox: &Sandbox,
        limits: PluginLimits,
    ) -> Result<Activation, PluginError> {
        self.expect(ComponentKind::Activation)?;
        let mut guest = self.instance(sandbox, &limits)?;
        Ok(Activation {
            forward: guest.instance.func(exports::ACT_FORWARD)?,
            derivative: guest.instance.func(exports::ACT_DERIVATIVE)?,
            both: guest.instance.func(exports::ACT_FORWARD_DERIVATIVE)?,
            guest,
            budget: limits.activation,
        })
    }

    /// A fresh, unfitted preprocessor instance.
    pub fn preprocessor(
        &self,
        sandbox: &Sandbox,
        limits: PluginLimits,
    ) -> Result<Preprocessor, PluginError> {
        self.expect(ComponentKind::Preprocessor)?;
        let mut guest = self.instance(sandbox, &limits)?;
        Ok(Preprocessor {
            fit: guest.instance.func(exports::PRE_FIT)?,
            width: guest.instance.func(exports::PRE_WIDTH)?,
            transform: guest.instance.func(exports::PRE_TRANSFORM)?,
            guest,
            fitted: None,
            limits,
        })
    }

    /// A fresh regularizer instance.
    pub fn regularizer(
        &self,
        sandbox: &Sandbox,
        limits: PluginLimits,
    ) -> Result<Regularizer, PluginError> {
        self.expect(ComponentKind::Regularizer)?;
        let mut guest = self.instance(sandbox, &limits)?;
        Ok(Regularizer {
            penalty: guest.instance.func(exports::REG_PENALTY)?,
            gradient: guest.instance.func(exports::REG_GRADIENT)?,
            guest,
            budget: limits.regularizer,
        })
    }

    fn expect(&self, kind: ComponentKind) -> Result<(), PluginError> {
        if self.meta.kind == kind {
            Ok(())
        } else {
            Err(PluginError::KindMismatch {
                expected: kind,
                found: self.meta.kind,
            })
        }
    }
}

/// An instance plus reusable guest buffers (slot i: pointer and capacity in floats).
struct Guest {
    instance: Instance,
    buffers: Vec<(u32, usize)>,
    /// A buffer left holding the canary by the last read-back: `(pointer, floats, guest
    /// entries then)`. Valid only while the guest has not run since, as it may write anywhere.
    primed: Option<(u32, usize, u64)>,
}

impl Guest {
    /// Guest buffer `slot` with room for at least `floats`, reallocated only when it must grow.
    fn buffer(&mut self, slot: usize, floats: usize) -> Result<u32, SandboxError> {
        if self.buffers.len() <= slot {
            self.buffers.resize(slot + 1, (0, 0));
        }
        let (ptr, cap) = self.buffers[slot];
        if cap >= floats && ptr != 0 {
            return Ok(ptr);
        }
        if ptr != 0 {
            self.instance.free(ptr, cap * 4)?;
            self.buffers[slot] = (0, 0);
        }
        let cap = floats.max(64).next_power_of_two();
        let ptr = self.instance.alloc(cap * 4)?;
        self.buffers[slot] = (ptr, cap);
        Ok(ptr)
    }

    fn input(&mut self, slot: usize, values: &[f32]) -> Result<u32, SandboxError> {
        let ptr = self.buffer(slot, values.len())?;
        self.instance.write_f32(ptr, values)?;
        Ok(ptr)
    }

    /// Run `call` on a canary-filled output buffer (followed by a canary guard zone) and read
    /// `out` back, checking that every output was written and nothing past the end.
    fn call_collecting(
        &mut self,
        slot: usize,
        out: &mut [f32],
        what: &str,
        call: impl FnMut(&mut Instance, u32) -> Result<(), SandboxError>,
    ) -> Result<(), SandboxError> {
        self.call_collecting_all(slot, &mut [out], what, call)
    }

    /// [`Guest::call_collecting`] for a call with several outputs, laid out one after another
    /// in one guest buffer from the pointer `call` is given; the guard zone follows the last.
    ///
    /// An output still holding the canary is either unwritten or a NaN with those very bits; a
    /// second run under another canary tells the two apart, so the common path runs once.
    fn call_collecting_all(
        &mut self,
        slot: usize,
        outs: &mut [&mut [f32]],
        what: &str,
        mut call: impl FnMut(&mut Instance, u32) -> Result<(), SandboxError>,
    ) -> Result<(), SandboxError> {
        let total: usize = outs.iter().map(|o| o.len()).sum();
        let floats = total + GUARD_FLOATS;
        let ptr = self.buffer(slot, floats)?;
        // Each read-back refills what it read with the canary, so a run of same-size calls
        // (the training loop) skips the separate fill pass.
        let primed = self.primed.take().is_some_and(|(p, n, entries)| {
            p == ptr && n >= floats && entries == self.instance.entries()
        });
        if !primed {
            self.instance
                .fill_f32(ptr, f32::from_bits(CANARY), floats)?;
        }
        let refill = f32::from_bits(CANARY);
        for canary in [CANARY, CANARY_CONFIRM] {
            if canary == CANARY_CONFIRM {
                self.instance
                    .fill_f32(ptr, f32::from_bits(canary), floats)?;
            }
            call(&mut self.instance, ptr)?;
            let marker = f32::from_bits(canary);
            let mut unwritten = 0;
            let mut at = ptr;
            for out in outs.iter_mut() {
                unwritten += self.instance.drain_f32(at, out, marker, refill)?;
                at += (out.len() * 4) as u32;
            }
            let mut guard = [0f32; GUARD_FLOATS];
            let intact = self.instance.drain_f32(at, &mut guard, marker, refill)?;
            self.primed = Some((ptr, floats, self.instance.entries()));
            if intact != GUARD_FLOATS {
                return Err(SandboxError::BadAbi(format!(
                    "{what} wrote past the end of its {}-element output",
                    outs.last().map_or(0, |o| o.len())
                )));
            }
            if unwritten == 0 {
                return Ok(());
            }
            if canary == CANARY_CONFIRM {
                return Err(SandboxError::BadAbi(format!(
                    "{what} left {unwritten} of {total} outputs unwritten"
                )));
            }
        }
        Ok(())
    }
}

fn check_status(code: i32, what: &str) -> Result<(), SandboxError> {
    if code == status::OK {
        Ok(())
    } else {
        Err(SandboxError::BadAbi(format!(
            "{what} returned status {code} ({})",
            status::describe(code)
        )))
    }
}

fn len_i32(n: usize) -> Result<i32, SandboxError> {
    i32::try_from(n)
        .map_err(|_| SandboxError::BadAbi(format!("{n} elements is too many for one call")))
}

/// An activation function instance: `f` and `f'` over buffers.
pub struct Activation {
    guest: Guest,
    forward: TypedFunc<(i32, i32, i32), i32>,
    derivative: TypedFunc<(i32, i32, i32), i32>,
    both: TypedFunc<(i32, i32, i32, i32), i32>,
    budget: Budget,
}

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation").finish_non_exhaustive()
    }
}

impl Activation {
    /// `y[i] = f(x[i])`.
    pub fn forward(&mut self, x: &[f32], y: &mut [f32]) -> Result<(), SandboxError> {
        let func = self.forward.clone();
        self.apply(&func, x, y, "hf_act_forward")
    }

    /// `dy[i] = f'(x[i])`.
    pub fn derivative(&mut self, x: &[f32], dy: &mut [f32]) -> Result<(), SandboxError> {
        let func = self.derivative.clone();
        self.apply(&func, x, dy, "hf_act_derivative")
    }

    /// `y[i] = f(x[i])` and `dy[i] = f'(x[i])` in one guest call per tile, which lets the guest
    /// evaluate `f` once for both (a dual number carries the value along with the slope).
    pub fn forward_with_derivative(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        dy: &mut [f32],
    ) -> Result<(), SandboxError> {
        assert!(
            x.len() == y.len() && x.len() == dy.len(),
            "input and output lengths differ"
        );
        let both = self.both.clone();
        let what = exports::ACT_FORWARD_DERIVATIVE;
        for ((x, y), dy) in x
            .chunks(TILE)
            .zip(y.chunks_mut(TILE))
            .zip(dy.chunks_mut(TILE))
        {
            let input = self.guest.input(0, x)?;
            let n = len_i32(x.len())?;
            // Both passes' worth of work in one call.
            let fuel = self.budget.for_elements(x.len()).saturating_mul(2);
            self.guest
                .call_collecting_all(1, &mut [y, dy], what, |instance, output| {
                    let slope = output + (x.len() * 4) as u32;
                    let args = (input as i32, output as i32, slope as i32, n);
                    let code = instance.call_with_fuel(&both, args, fuel)?;
                    check_status(code, what)
                })?;
        }
        Ok(())
    }

    /// `func` over `x` in tiles of [`TILE`] elements.
    fn apply(
        &mut self,
        func: &TypedFunc<(i32, i32, i32), i32>,
        x: &[f32],
        y: &mut [f32],
        what: &str,
    ) -> Result<(), SandboxError> {
        assert_eq!(x.len(), y.len(), "input and output lengths differ");
        for (x, y) in x.chunks(TILE).zip(y.chunks_mut(TILE)) {
            self.apply_tile(func, x, y, what)?;
        }
        Ok(())
    }

    fn apply_tile(
        &mut self,
        func: &TypedFunc<(i32, i32, i32), i32>,
        x: &[f32],
        y: &mut [f32],
        what: &str,
    ) -> Result<(), SandboxError> {
        let input = self.guest.input(0, x)?;
        let n = len_i32(x.len())?;
        let fuel = self.budget.for_elements(x.len());
        self.guest.call_collecting(1, y, what, |instance, output| {
            let code = instance.call_with_fuel(func, (input as i32, output as i32, n), fuel)?;
            check_status(code, what)
        })
    }
}

/// A preprocessor instance: `fit` once, then `transform` any number of matrices.
pub struct Preprocessor {
    guest: Guest,
    fit: TypedFunc<(i32, i32, i32), i32>,
    width: TypedFunc<(), i32>,
    transform: TypedFunc<(i32, i32, i32, i32), i32>,
    /// (input width, output width) once fitted.
    fitted: Option<(usize, usize)>,
    limits: PluginLimits,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("fitted", &self.fitted)
            .finish_non_exhaustive()
    }
}

impl Preprocessor {
    /// Fit on a row-major `rows × cols` training matrix; returns the declared output width.
    pub fn fit(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<usize, SandboxError> {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix size disagrees with its shape"
        );
        let (r, c) = (len_i32(rows)?, len_i32(cols)?);
        let input = self.guest.input(0, data)?;
        let fuel = self.limits.fit.for_elements(data.len());
        let code =
            self.guest
                .instance
                .call_with_fuel(&self.fit.clone(), (input as i32, r, c), fuel)?;
        check_status(code, "hf_pre_fit")?;
        let width = self.guest.instance.call(&self.width.clone(), ())?;
        let max = max_output_width(cols);
        let width = usize::try_from(width)
            .ok()
            .filter(|w| (1..=max).contains(w))
            .ok_or_else(|| {
                SandboxError::BadAbi(format!(
                    "declared output width {width} for {cols} input columns is outside 1..={max}"
                ))
            })?;
        self.fitted = Some((cols, width));
        Ok(width)
    }

    /// The declared output width, once fitted.
    pub fn output_width(&self) -> Option<usize> {
        self.fitted.map(|(_, w)| w)
    }

    /// Transform a row-major `rows × cols` matrix into `rows × output_width` (in `out`).
    pub fn transform(
        &mut self,
        data: &[f32],
        rows: usize,
        cols: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), SandboxError> {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix size disagrees with its shape"
        );
        let Some((fit_cols, width)) = self.fitted else {
            return Err(SandboxError::BadAbi("transform before fit".into()));
        };
        if cols != fit_cols {
            return Err(SandboxError::BadAbi(format!(
                "transform of a {cols}-column matrix after fitting {fit_cols} columns"
            )));
        }
        let (r, c) = (len_i32(rows)?, len_i32(cols)?);
        let out_len = rows * width;
        len_i32(out_len)?;
        let input = self.guest.input(0, data)?;
        let fuel = self
            .limits
            .transform
            .for_elements(data.len().saturating_mul(width.max(1)));
        out.clear();
        out.resize(out_len, 0.0);
        let func = self.transform.clone();
        self.guest
            .call_collecting(1, out, "hf_pre_transform", |instance, output| {
                let code =
                    instance.call_with_fuel(&func, (input as i32, r, c, output as i32), fuel)?;
                check_status(code, "hf_pre_transform")
            })
    }
}

/// A regularizer instance: penalty and gradient of one weight matrix at a time.
pub struct Regularizer {
    guest: Guest,
    penalty: TypedFunc<(i32, i32, i32), f32>,
    gradient: TypedFunc<(i32, i32, i32, i32), i32>,
    budget: Budget,
}

impl std::fmt::Debug for Regularizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regularizer").finish_non_exhaustive()
    }
}

impl Regularizer {
    /// The penalty of a row-major `rows × cols` weight matrix.
    pub fn penalty(&mut self, w: &[f32], rows: usize, cols: usize) -> Result<f32, SandboxError> {
        assert_eq!(w.len(), rows * cols, "matrix size disagrees with its shape");
        let input = self.guest.input(0, w)?;
        let fuel = self.budget.for_elements(w.len());
        self.guest.instance.call_with_fuel(
            &self.penalty.clone(),
            (input as i32, len_i32(rows)?, len_i32(cols)?),
            fuel,
        )
    }

    /// The penalty's gradient with respect to `w`, written to `grad` (same shape).
    pub fn gradient(
        &mut self,
        w: &[f32],
        rows: usize,
        cols: usize,
        grad: &mut [f32],
    ) -> Result<(), SandboxError> {
        assert_eq!(w.len(), rows * cols, "matrix size disagrees with its shape");
        assert_eq!(grad.len(), w.len(), "gradient and weights differ in size");
        let input = self.guest.input(0, w)?;
        let fuel = self.budget.for_elements(w.len());
        let (r, c) = (len_i32(rows)?, len_i32(cols)?);
        let func = self.gradient.clone();
        self.guest
            .call_collecting(1, grad, "hf_reg_gradient", |instance, output| {
                let code =
                    instance.call_with_fuel(&func, (input as i32, r, c, output as i32), fuel)?;
                check_status(code, "hf_reg_gradient")
            })
    }
}
