//! Runs untrusted WebAssembly modules under hard limits and turns every way they can fail into a
//! typed, classified error.
//!
//! - One shared [`Engine`] per process (compiled code is engine-bound; instances are cheap).
//! - Fuel gives each call a deterministic instruction budget; epoch interruption is the
//!   wall-clock backstop for anything fuel does not meter.
//! - [`wasmtime::StoreLimits`] caps linear memory; `max_wasm_stack` caps the call stack.
//! - No host function is ever defined, so a module with any import is refused before it is
//!   compiled, and a module without the expected ABI-version section is refused too.
//!
//! The sandbox knows the plugin protocol's generic parts (the ABI section, the guest allocator,
//! the panic report) but nothing about what a plugin computes.

use std::ops::Range;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hypoforge_spec::ErrorClass;
use hypoforge_spec::abi::{self, exports};
use wasmtime::{
    Config, Engine, Memory, Module, OptLevel, ResourceLimiter, Store, StoreLimits,
    StoreLimitsBuilder, Trap,
};

mod inspect;

pub use inspect::{MAX_CODE_BYTES, MAX_FUNCTION_BYTES, MAX_MODULE_BYTES, ModuleInfo, inspect};
pub use wasmtime::{TypedFunc, WasmParams, WasmResults};

/// Largest table a module may have (Rust plugins need a few dozen entries).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Instructions a module's start function may run while instantiating. SDK plugins have none;
/// a small budget ends a hostile one long before any deadline, however loaded the machine.
const INSTANTIATE_FUEL: u64 = 10_000_000;

/// How often the shared epoch ticker advances the engine's epoch.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Resource limits for one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear-memory cap in bytes.
    pub memory_bytes: usize,
    /// Instructions (fuel units) each call may use unless the caller gives its own budget.
    pub fuel_per_call: u64,
    /// Wall-clock backstop per call.
    pub deadline: Duration,
    /// An absolute end for the instance: once it passes, every call fails with a deadline.
    /// Bounds the total time of a sequence of calls (a whole validation, say).
    pub expires_at: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            fuel_per_call: 2_000_000_000,
            deadline: Duration::from_secs(5),
            expires_at: None,
        }
    }
}

/// Everything that can go wrong loading or running a plugin.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("not a valid WebAssembly module: {0}")]
    InvalidModule(String),
    #[error("the module imports {0}; plugins may import nothing")]
    HasImports(String),
    #[error(
        "the module has no `{}` section: it was not built with the hypoforge SDK",
        abi::ABI_SECTION
    )]
    MissingAbiSection,
    #[error("the module targets plugin ABI version {found}, this host speaks version {expected}")]
    AbiVersion { found: u32, expected: u32 },
    #[error("the module lacks the export `{name}` ({expected})")]
    MissingExport { name: String, expected: String },
    #[error("the plugin used up its budget of {budget} instructions")]
    OutOfFuel { budget: u64 },
    #[error("the plugin ran past its {}ms deadline", deadline.as_millis())]
    Deadline { deadline: Duration },
    #[error("the plugin used up the time budget of the whole run it is part of")]
    Expired,
    #[error("the module asked for a table beyond the {limit}-element cap")]
    TableLimit { limit: usize },
    #[error("the plugin asked for more than its {} MiB memory cap{}", limit >> 20, panic_suffix(.message))]
    MemoryLimit {
        limit: usize,
        message: Option<String>,
    },
    #[error("the plugin exhausted its call stack (runaway recursion?)")]
    StackOverflow,
    #[error("the plugin panicked{}", panic_suffix(.message))]
    Panic { message: Option<String> },
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin broke the calling convention: {0}")]
    BadAbi(String),
    #[error("sandbox failure: {0}")]
    Internal(String),
}

fn panic_suffix(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl SandboxError {
    /// The error's class, for counting failures by cause.
    pub fn class(&self) -> ErrorClass {
        match self {
            SandboxError::InvalidModule(_)
            | SandboxError::HasImports(_)
            | SandboxError::MissingExport { .. } => ErrorClass::BadModule,
            SandboxError::MissingAbiSection | SandboxError::AbiVersion { .. } => {
                ErrorClass::AbiVersion
            }
            SandboxError::OutOfFuel { .. } => ErrorClass::OutOfFuel,
            SandboxError::Deadline { .. } | SandboxError::Expired => ErrorClass::Deadline,
            SandboxError::MemoryLimit { .. } | SandboxError::TableLimit { .. } => {
                ErrorClass::MemoryLimit
            }
            SandboxError::StackOverflow => ErrorClass::StackOverflow,
            SandboxError::Panic { .. } => ErrorClass::Panic,
            SandboxError::Trap(_) => ErrorClass::Trap,
            SandboxError::BadAbi(_) => ErrorClass::BadAbi,
            SandboxError::Internal(_) => ErrorClass::Internal,
        }
    }
}

/// Engine settings that trade speed for reproducibility.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Canonicalize NaN bit patterns after every float operation. WebAssembly arithmetic is
    /// already deterministic except for the sign and payload of NaNs, and a NaN output fails
    /// validation anyway; canonicalizing makes even code that inspects NaN bits reproducible
    /// across CPU architectures, at about 4× the cost of float-heavy plugins (BENCHMARKS.md).
    pub canonicalize_nans: bool,
}

/// The process-wide WebAssembly engine with the sandbox's configuration.
#[derive(Clone, Debug)]
pub struct Sandbox {
    engine: Engine,
}

impl Sandbox {
    /// The shared sandbox, created on first use.
    pub fn shared() -> Result<&'static Sandbox, SandboxError> {
        static SHARED: OnceLock<Result<Sandbox, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Sandbox::new().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| SandboxError::Internal(e.clone()))
    }

    /// A new engine with default options and its epoch ticker. Prefer [`Sandbox::shared`].
    pub fn new() -> Result<Sandbox, SandboxError> {
        Sandbox::with_options(SandboxOptions::default())
    }

    /// A new engine with `options` and its epoch ticker.
    pub fn with_options(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(512 << 10)
            .cranelift_opt_level(OptLevel::Speed)
            // Determinism: NaN payloads and relaxed SIMD are the two places where the same
            // module could give different bits on different hosts.
            .cranelift_nan_canonicalization(options.canonicalize_nans)
            .wasm_relaxed_simd(false)
            .wasm_multi_memory(false);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Internal(format!("{e:#}")))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("hypoforge-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| SandboxError::Internal(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Sandbox { engine })
    }

    /// Check a module against the plugin rules (no imports, a matching ABI version) and compile it.
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedModule, SandboxError> {
        let info = inspect(wasm)?;
        if !info.imports.is_empty() {
            return Err(SandboxError::HasImports(info.imports.join(", ")));
        }
        match info.abi_version {
            None => return Err(SandboxError::MissingAbiSection),
            Some(found) if found != abi::ABI_VERSION => {
                return Err(SandboxError::AbiVersion {
                    found,
                    expected: abi::ABI_VERSION,
                });
            }
            Some(_) => {}
        }
        let module = Module::new(&self.engine, wasm)
            .map_err(|e| SandboxError::InvalidModule(format!("{e:#}")))?;
        Ok(LoadedModule { module, info })
    }

    /// Instantiate a loaded module under `limits`.
    pub fn instantiate(
        &self,
        module: &LoadedModule,
        limits: Limits,
    ) -> Result<Instance, SandboxError> {
        let state = HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .memories(1)
                .tables(4)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(1)
                .build(),
            memory_cap: limits.memory_bytes,
            memory_denied: false,
            table_denied: false,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        let deadline = arm(&mut store, INSTANTIATE_FUEL, &limits)?;
        let instance = wasmtime::Instance::new(&mut store, &module.module, &[])
            .map_err(|e| classify(&mut store, e, INSTANTIATE_FUEL, deadline, None))?;
        let memory = instance
            .get_memory(&mut store, exports::MEMORY)
            .ok_or_else(|| SandboxError::MissingExport {
                name: exports::MEMORY.into(),
                expected: "linear memory".into(),
            })?;
        let panic_message = instance
            .get_typed_func::<(), i32>(&mut store, exports::PANIC_MESSAGE)
            .ok();
        Ok(Instance {
            store,
            instance,
            memory,
            panic_message,
            limits,
            entries: 0,
        })
    }
}

/// A module that passed the load-time checks, compiled and ready to instantiate.
#[derive(Clone, Debug)]
pub struct LoadedModule {
    module: Module,
    info: ModuleInfo,
}

impl LoadedModule {
    /// What inspection found: exports and custom sections.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }
}

struct HostState {
    limits: StoreLimits,
    memory_cap: usize,
    /// Set when the module asked for memory beyond its cap during the current call.
    memory_denied: bool,
    /// Set when the module asked for a table beyond its cap.
    table_denied: bool,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.memory_denied = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        if !allowed {
            self.table_denied = true;
        }
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Give the next call its fuel and deadline; returns the deadline in force (the per-call one,
/// or less when the instance expires sooner).
fn arm(store: &mut Store<HostState>, fuel: u64, limits: &Limits) -> Result<Duration, SandboxError> {
    let deadline = match limits.expires_at {
        Some(end) => {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SandboxError::Expired);
            }
            limits.deadline.min(left)
        }
        None => limits.deadline,
    };
    store
        .set_fuel(fuel)
        .map_err(|e| SandboxError::Internal(format!("{e:#}")))?;
    let ticks = deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    store.data_mut().memory_denied = false;
    Ok(deadline)
}

fn classify(
    store: &mut Store<HostState>,
    error: wasmtime::Error,
    fuel: u64,
    deadline: Duration,
    panic_message: Option<String>,
) -> SandboxError {
    if store.data().table_denied {
        return SandboxError::TableLimit {
            limit: MAX_TABLE_ELEMENTS,
        };
    }
    if store.data().memory_denied {
        return SandboxError::MemoryLimit {
            limit: store.data().memory_cap,
            message: panic_message,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => SandboxError::OutOfFuel { budget: fuel },
        Some(Trap::Interrupt) => SandboxError::Deadline { deadline },
        Some(Trap::StackOverflow) => SandboxError::StackOverflow,
        Some(Trap::UnreachableCodeReached) => SandboxError::Panic {
            message: panic_message,
        },
        Some(trap) => SandboxError::Trap(trap.to_string()),
        None => SandboxError::Internal(format!("{error:#}")),
    }
}

/// One live plugin instance. Every call re-arms the fuel budget and the deadline, so one call's
/// consumption never leaks into the next.
pub struct Instance {
    store: Store<HostState>,
    instance: wasmtime::Instance,
    memory: Memory,
    panic_message: Option<TypedFunc<(), i32>>,
    limits: Limits,
    /// Times guest code has been entered; see [`Instance::entries`].
    entries: u64,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// The limits this instance runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Look up a typed export; a missing or mistyped export is a [`SandboxError::MissingExport`].
    pub fn func<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, SandboxError> {
        self.instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(|e| SandboxError::MissingExport {
                name: name.into(),
                expected: format!("{e:#}"),
            })
    }

    /// Call `func` with the default budget.
    pub fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        func: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, SandboxError> {
        self.call_with_fuel(func, params, self.limits.fuel_per_call)
    }

    /// Call `func` with an explicit instruction budget (the deadline stays the instance's).
    pub fn call_with_fuel<P: WasmParams, R: WasmResults>(
        &mut self,
        func: &TypedFunc<P, R>,
        params: P,
        fuel: u64,
    ) -> Result<R, SandboxError> {
        let deadline = arm(&mut self.store, fuel, &self.limits)?;
        self.entries += 1;
        match func.call(&mut self.store, params) {
            Ok(r) => Ok(r),
            Err(e) => {
                // Read the flag first: fetching the panic report re-arms the store.
                let memory_denied = self.store.data().memory_denied;
                let message = self.panic_report();
                self.store.data_mut().memory_denied = memory_denied;
                match classify(&mut self.store, e, fuel, deadline, message) {
                    // A deadline cut short by the instance's expiry is the overall budget's doing.
                    SandboxError::Deadline { .. } if deadline < self.limits.deadline => {
                        Err(SandboxError::Expired)
                    }
                    other => Err(other),
                }
            }
        }
    }

    /// How many times guest code has run in this instance. The guest may write anywhere in its
    /// memory whenever it runs, so what the host knows about that memory holds only while this
    /// count is unchanged.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Fuel left after the last call.
    pub fn fuel_left(&self) -> u64 {
        self.store.get_fuel().unwrap_or(0)
    }

    /// The message the guest's panic handler left, if it left one.
    fn panic_report(&mut self) -> Option<String> {
        let func = self.panic_message.clone()?;
        let report_limits = Limits {
            deadline: Duration::from_secs(1),
            expires_at: None,
            ..self.limits
        };
        arm(&mut self.store, 1_000_000, &report_limits).ok()?;
        self.entries += 1;
        let at = func.call(&mut self.store, ()).ok()?;
        let mut len = [0u8; 4];
        self.read_bytes(at as u32, &mut len).ok()?;
        let len = u32::from_le_bytes(len).min(4096) as usize;
        if len == 0 {
            return None;
        }
        let mut bytes = vec![0u8; len];
        self.read_bytes((at as u32).checked_add(4)?, &mut bytes)
            .ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Allocate `bytes` in the guest through its exported allocator.
    pub fn alloc(&mut self, bytes: usize) -> Result<u32, SandboxError> {
        let size = i32::try_from(bytes)
            .map_err(|_| SandboxError::BadAbi(format!("buffer of {bytes} bytes is too large")))?;
        let alloc = self.func::<i32, i32>(exports::ALLOC)?;
        let ptr = self.call(&alloc, size)? as u32;
        if ptr == 0 {
            return Err(if self.store.data().memory_denied {
                SandboxError::MemoryLimit {
                    limit: self.limits.memory_bytes,
                    message: Some(format!("allocating a {bytes}-byte buffer failed")),
                }
            } else {
                SandboxError::BadAbi(format!("hf_alloc({bytes}) returned null"))
            });
        }
        self.check_range(ptr, bytes)?;
        Ok(ptr)
    }

    /// Give back a block from [`Instance::alloc`].
    pub fn free(&mut self, ptr: u32, bytes: usize) -> Result<(), SandboxError> {
        let free = self.func::<(i32, i32), ()>(exports::FREE)?;
        self.call(&free, (ptr as i32, bytes as i32))
    }

    fn check_range(&mut self, ptr: u32, bytes: usize) -> Result<(), SandboxError> {
        let size = self.memory.data_size(&self.store);
        let end = (ptr as usize).checked_add(bytes);
        if end.is_none_or(|end| end > size) {
            return Err(SandboxError::BadAbi(format!(
                "buffer at {ptr:#x}+{bytes} lies outside the {size}-byte memory"
            )));
        }
        Ok(())
    }

    /// Copy bytes out of guest memory; a range outside it is a [`SandboxError::BadAbi`].
    pub fn read_bytes(&mut self, ptr: u32, out: &mut [u8]) -> Result<(), SandboxError> {
        self.check_range(ptr, out.len())?;
        self.memory
            .read(&self.store, ptr as usize, out)
            .map_err(|e| SandboxError::BadAbi(e.to_string()))
    }

    /// Copy `f32`s into guest memory at `ptr`.
    pub fn write_f32(&mut self, ptr: u32, values: &[f32]) -> Result<(), SandboxError> {
        let range = self.float_range(ptr, values.len())?;
        with_words(&mut self.memory.data_mut(&mut self.store)[range], |words| {
            for (w, v) in words.iter_mut().zip(values) {
                *w = v.to_bits();
            }
        });
        Ok(())
    }

    /// Set `count` `f32`s of guest memory at `ptr` to `value`.
    pub fn fill_f32(&mut self, ptr: u32, value: f32, count: usize) -> Result<(), SandboxError> {
        let range = self.float_range(ptr, count)?;
        with_words(&mut self.memory.data_mut(&mut self.store)[range], |words| {
            words.fill(value.to_bits());
        });
        Ok(())
    }

    /// Copy `out.len()` floats out of guest memory at `ptr` and leave `refill` in their place,
    /// in one pass; returns how many of them had exactly the bits of `marker`. This is the
    /// read-back of a canary-checked output that also primes the buffer for the next call.
    pub fn drain_f32(
        &mut self,
        ptr: u32,
        out: &mut [f32],
        marker: f32,
        refill: f32,
    ) -> Result<usize, SandboxError> {
        let range = self.float_range(ptr, out.len())?;
        let (marker, refill) = (marker.to_bits(), refill.to_bits());
        let hits = with_words(&mut self.memory.data_mut(&mut self.store)[range], |words| {
            drain_words(out, words, marker, refill)
        });
        Ok(hits as usize)
    }

    /// Copy `f32`s out of guest memory at `ptr`.
    pub fn read_f32(&mut self, ptr: u32, out: &mut [f32]) -> Result<(), SandboxError> {
        let range = self.float_range(ptr, out.len())?;
        with_words(&mut self.memory.data_mut(&mut self.store)[range], |words| {
            for (v, w) in out.iter_mut().zip(words.iter()) {
                *v = f32::from_bits(*w);
            }
        });
        Ok(())
    }

    /// The byte range of `count` floats at `ptr`, checked against the memory's size.
    fn float_range(&mut self, ptr: u32, count: usize) -> Result<Range<usize>, SandboxError> {
        let bytes = count
            .checked_mul(4)
            .ok_or_else(|| SandboxError::BadAbi(format!("{count} floats is too many")))?;
        self.check_range(ptr, bytes)?;
        Ok(ptr as usize..ptr as usize + bytes)
    }
}

/// The loop of [`Instance::drain_f32`], in the widest vectors the CPU has: it runs on every
/// plugin call over every output, and is bound by its stores.
fn drain_words(out: &mut [f32], words: &mut [u32], marker: u32, refill: u32) -> u32 {
    #[inline(always)]
    fn drain(out: &mut [f32], words: &mut [u32], marker: u32, refill: u32) -> u32 {
        // A 32-bit count keeps a lane per float.
        let mut hits = 0u32;
        for (v, w) in out.iter_mut().zip(words.iter_mut()) {
            hits += u32::from(*w == marker);
            *v = f32::from_bits(*w);
            *w = refill;
        }
        hits
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn drain_avx2(out: &mut [f32], words: &mut [u32], marker: u32, refill: u32) -> u32 {
            drain(out, words, marker, refill)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { drain_avx2(out, words, marker, refill) };
        }
    }
    drain(out, words, marker, refill)
}

/// Run `f` on guest memory `bytes` as little-endian 32-bit words: in place when the host's byte
/// order and the range's alignment allow (always in practice: linear memory is page-aligned and
/// guest allocators align), else on a copy written back afterwards (a hostile allocator may hand
/// out odd addresses). In place, the loops over words compile to vector code; over bytes they do
/// not.
fn with_words<R>(bytes: &mut [u8], f: impl FnOnce(&mut [u32]) -> R) -> R {
    if cfg!(target_endian = "little")
        && let Ok(words) = bytemuck::try_cast_slice_mut::<u8, u32>(bytes)
    {
        return f(words);
    }
    let mut words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let result = f(&mut words);
    for (c, w) in bytes.chunks_exact_mut(4).zip(&words) {
        c.copy_from_slice(&w.to_le_bytes());
    }
    result
}
