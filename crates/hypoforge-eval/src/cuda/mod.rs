//! The batched loop on an NVIDIA GPU: hand-written kernels (`kernels.cu`) compiled by NVRTC at
//! run time and cached on disk, launched through cudarc. The driver and NVRTC are loaded
//! dynamically and probed before anything touches them, so a build with this feature runs, and
//! says why the GPU is unavailable, on a machine without CUDA.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::{CompileOptions, Ptx};
use sha2::{Digest, Sha256};

use crate::batched::table::{FLAT_LEN, HALF_RANGE, INTERVALS, STEP_LOG2};
use crate::batched::{Backend, BatchDevice, LaneTotals, Prepared, Slot};
use crate::model::{Objective, Optimizer};

/// The kernels' source; the host prepends the table constants.
pub const KERNELS: &str = include_str!("kernels.cu");

/// Entry points of [`KERNELS`].
pub const ENTRY_POINTS: [&str; 9] = [
    "gather_rows",
    "linear_forward",
    "weight_gradient",
    "input_gradient",
    "bias_gradient",
    "loss",
    "adam",
    "sgd",
    "check_loss",
];

/// Why the GPU cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver was found (libcuda.so); is the NVIDIA driver installed?")]
    NoDriver,
    #[error(
        "NVRTC was not found (libnvrtc.so); install the CUDA toolkit or `pip install nvidia-cuda-nvrtc`, \
         and point HYPOFORGE_NVRTC at the library file or add its folder to LD_LIBRARY_PATH"
    )]
    NoNvrtc,
    #[error("the CUDA driver reports no GPU{0}")]
    NoDevice(String),
    #[error("CUDA driver error: {0}")]
    Driver(String),
    #[error("NVRTC could not compile the kernels: {0}")]
    Compile(String),
    #[error("the CUDA libraries misbehaved ({0})")]
    Broken(String),
}

/// Run `f`, turning a panic inside the CUDA bindings (a missing symbol in an old library) into
/// an error: the GPU is an accelerator, and its absence or age must never take hypoforge down.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, CudaError>) -> Result<T, CudaError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        Err(CudaError::Broken(format!("{what}: {message}")))
    })
}

/// Libraries loaded by path before cudarc looks for them by name: once loaded, the dynamic
/// loader finds a library by its soname, so `HYPOFORGE_NVRTC` (or a usual install folder)
/// works without LD_LIBRARY_PATH. NVRTC opens its builtins library by name when it compiles,
/// so that one, from the same folder, is loaded first. Kept loaded for the life of the process.
fn preload_nvrtc() {
    static LOADED: OnceLock<Vec<libloading::Library>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(path) = std::env::var_os("HYPOFORGE_NVRTC") {
            candidates.push(path.into());
        }
        for dir in [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
        ] {
            for name in ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"] {
                candidates.push(PathBuf::from(dir).join(name));
            }
        }
        let Some(nvrtc) = candidates.into_iter().find(|p| p.is_file()) else {
            return Vec::new();
        };
        let builtins = nvrtc.parent().and_then(|dir| {
            std::fs::read_dir(dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libnvrtc-builtins.so"))
                })
        });
        builtins
            .into_iter()
            .chain([nvrtc])
            // SAFETY: loading NVRTC runs its initializers, which is what using it requires.
            .filter_map(|p| unsafe { libloading::Library::new(p) }.ok())
            .collect()
    });
}

/// Whether NVRTC can be loaded (it compiles without a GPU).
pub fn nvrtc_available() -> bool {
    preload_nvrtc();
    // SAFETY: only opens and closes the library.
    guarded("loading NVRTC", || {
        Ok(unsafe { cudarc::nvrtc::sys::is_culib_present() })
    })
    .unwrap_or(false)
}

/// Check for the driver, NVRTC and a device, touching nothing that could fail hard.
pub fn probe() -> Result<usize, CudaError> {
    // SAFETY: only opens and closes the library.
    if !guarded("loading the driver", || {
        Ok(unsafe { cudarc::driver::sys::is_culib_present() })
    })? {
        return Err(CudaError::NoDriver);
    }
    if !nvrtc_available() {
        return Err(CudaError::NoNvrtc);
    }
    let count = guarded("counting devices", || {
        CudaContext::device_count().map_err(|e| CudaError::NoDevice(format!(" ({e:?})")))
    })?;
    if count <= 0 {
        return Err(CudaError::NoDevice(String::new()));
    }
    Ok(count as usize)
}

/// The kernels with the table constants, as NVRTC compiles them.
fn source() -> String {
    format!(
        "#define TABLE_INTERVALS {INTERVALS}\n#define TABLE_PER_UNIT {}.0f\n\
         #define TABLE_HALF_RANGE {HALF_RANGE:.1}f\n#define TABLE_FLAT {FLAT_LEN}\n{KERNELS}",
        1u32 << STEP_LOG2
    )
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HYPOFORGE_CACHE_DIR") {
        return PathBuf::from(dir).join("cuda");
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("hypoforge/cuda");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/hypoforge/cuda"),
        None => std::env::temp_dir().join("hypoforge-cache/cuda"),
    }
}

/// Compile the kernels to PTX for `arch` (`compute_90`), through the cache under hypoforge's
/// cache folder (`$HYPOFORGE_CACHE_DIR/cuda`, else the user's cache folder).
pub fn compile(arch: &str) -> Result<String, CudaError> {
    compile_cached(arch, &cache_dir())
}

/// Compile the kernels to PTX for `arch`, through a cache in `cache` keyed by the source, the
/// options and NVRTC's version. Needs NVRTC, not a GPU.
pub fn compile_cached(arch: &str, cache: &std::path::Path) -> Result<String, CudaError> {
    if !nvrtc_available() {
        return Err(CudaError::NoNvrtc);
    }
    let src = source();
    let options = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_owned(),
    ];
    let version = guarded("asking NVRTC's version", || {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: NVRTC is loaded (checked above) and writes two ints.
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| CudaError::Compile(format!("{e:?}")))?;
        Ok((major, minor))
    })?;
    let mut hash = Sha256::new();
    hash.update(src.as_bytes());
    hash.update(format!("{options:?} {version:?}").as_bytes());
    let key = hex_digest(&hash.finalize());
    let path = cache.join(format!("{key}.ptx"));
    if let Ok(ptx) = std::fs::read_to_string(&path) {
        return Ok(ptx);
    }
    let ptx = guarded("compiling with NVRTC", || {
        cudarc::nvrtc::compile_ptx_with_opts(
            &src,
            CompileOptions {
                options,
                ..CompileOptions::default()
            },
        )
        .map_err(|e| match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                CudaError::Compile(log.to_string_lossy().into_owned())
            }
            other => CudaError::Compile(format!("{other:?}")),
        })
    })?
    .to_src();
    // A cache that cannot be written only costs a compile next time.
    if std::fs::create_dir_all(cache).is_ok() {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &ptx).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(ptx)
}

fn hex_digest(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn driver(e: cudarc::driver::DriverError) -> String {
    format!("{e:?}")
}

/// An opened GPU with the kernels loaded.
#[derive(Debug)]
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    functions: Vec<CudaFunction>,
    name: String,
}

impl CudaDevice {
    /// Open GPU `ordinal`: probe, create the context, compile (or read from the cache) and load
    /// the kernels.
    pub fn open(ordinal: usize) -> Result<CudaDevice, CudaError> {
        let count = probe()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice(format!(
                " with index {ordinal} (there are {count})"
            )));
        }
        guarded("opening the GPU", || {
            let ctx = CudaContext::new(ordinal).map_err(|e| CudaError::Driver(driver(e)))?;
            // SAFETY: hypoforge uses one stream per context, so there is nothing to order
            // between streams; tracking would only add an event per kernel argument.
            unsafe { ctx.disable_event_tracking() };
            let (major, minor) = ctx
                .compute_capability()
                .map_err(|e| CudaError::Driver(driver(e)))?;
            let ptx = compile(&format!("compute_{major}{minor}"))?;
            let module: Arc<CudaModule> = ctx
                .load_module(Ptx::from_src(ptx))
                .map_err(|e| {
                    CudaError::Driver(format!(
                        "{} (a driver older than NVRTC cannot load its PTX: update the driver, or use an NVRTC of the driver's CUDA version)",
                        driver(e)
                    ))
                })?;
            let functions = ENTRY_POINTS
                .iter()
                .map(|f| module.load_function(f))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CudaError::Driver(driver(e)))?;
            let gpu = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
            Ok(CudaDevice {
                ctx,
                functions,
                name: format!("cuda:{ordinal} ({gpu}, compute {major}.{minor})"),
            })
        })
    }
}

impl BatchDevice for CudaDevice {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn backend(&self) -> Result<Box<dyn Backend + '_>, String> {
        Ok(Box::new(CudaBackend {
            device: self,
            stream: self.ctx.default_stream(),
            state: None,
        }))
    }
}

/// Device memory of one batch.
struct State {
    /// The batch's shape: `prepared` without its data, which lives on the device.
    p: Prepared,
    has_labels: bool,
    has_values: bool,
    train_x: CudaSlice<f32>,
    valid_x: CudaSlice<f32>,
    train_labels: CudaSlice<u32>,
    valid_labels: CudaSlice<u32>,
    train_values: CudaSlice<f32>,
    valid_values: CudaSlice<f32>,
    order: CudaSlice<u32>,
    slot_of_lane: CudaSlice<u32>,
    tables: CudaSlice<f32>,
    table_of_lane: CudaSlice<i32>,
    params: CudaSlice<f32>,
    grads: CudaSlice<f32>,
    m: CudaSlice<f32>,
    v: CudaSlice<f32>,
    reg_grad: CudaSlice<f32>,
    penalty: CudaSlice<f64>,
    /// Each lane's last training loss, checked with its penalty in `update`.
    step_loss: CudaSlice<f64>,
    x: CudaSlice<f32>,
    labels: CudaSlice<u32>,
    values: CudaSlice<f32>,
    /// Per layer: pre-activation (output layer) or activation, slope, and gradient.
    a: Vec<CudaSlice<f32>>,
    s: Vec<CudaSlice<f32>>,
    dz: Vec<CudaSlice<f32>>,
    valid_loss: CudaSlice<f64>,
    correct: CudaSlice<u64>,
    failed_step: CudaSlice<u64>,
    failed_loss: CudaSlice<f64>,
}

/// The batched loop's operations as kernel launches on one stream; nothing waits for the GPU
/// but the reads.
pub struct CudaBackend<'a> {
    device: &'a CudaDevice,
    stream: Arc<CudaStream>,
    state: Option<State>,
}

impl std::fmt::Debug for CudaBackend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.device.name)
            .finish()
    }
}

fn upload<T: DeviceRepr + ValidAsZeroBits + Copy>(
    stream: &Arc<CudaStream>,
    data: &[T],
) -> Result<CudaSlice<T>, String> {
    if data.is_empty() {
        // A kernel argument must point somewhere, even where it is never read.
        return stream.alloc_zeros::<T>(1).map_err(driver);
    }
    stream.clone_htod(data).map_err(driver)
}

fn zeros<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    len: usize,
) -> Result<CudaSlice<T>, String> {
    stream.alloc_zeros::<T>(len.max(1)).map_err(driver)
}

const GATHER: usize = 0;
const FORWARD: usize = 1;
const WEIGHT_GRAD: usize = 2;
const INPUT_GRAD: usize = 3;
const BIAS_GRAD: usize = 4;
const LOSS: usize = 5;
const ADAM: usize = 6;
const SGD: usize = 7;
const CHECK_LOSS: usize = 8;

/// `blocks` of `threads` threads, no dynamic shared memory.
fn grid(blocks: (u32, u32, u32), threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: blocks,
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn tiles(n: usize) -> u32 {
    n.div_ceil(64) as u32
}

fn as_i32(n: usize) -> Result<i32, String> {
    i32::try_from(n).map_err(|_| format!("{n} does not fit the kernels' 32-bit sizes"))
}

impl CudaBackend<'_> {
    fn state(&self) -> Result<&State, String> {
        self.state
            .as_ref()
            .ok_or_else(|| "the backend was used before `prepare`".to_owned())
    }

    fn gather(&mut self, train: bool, offset: usize, rows: usize) -> Result<(), String> {
        let st = self
            .state
            .as_mut()
            .ok_or("the backend was used before `prepare`")?;
        let p = &st.p;
        let (data, labels, values, slot_rows) = if train {
            (
                &st.train_x,
                &st.train_labels,
                &st.train_values,
                p.train_rows,
            )
        } else {
            (
                &st.valid_x,
                &st.valid_labels,
                &st.valid_values,
                p.valid_rows,
            )
        };
        let cols = as_i32(p.inputs())?;
        let (rows_i, batch, slot_rows) = (as_i32(rows)?, as_i32(p.batch)?, as_i32(slot_rows)?);
        let use_index = i32::from(train);
        let index_stride = (p.steps() * p.batch) as i64;
        let offset = if train {
            (offset * p.batch) as i64
        } else {
            offset as i64
        };
        let has_labels = i32::from(st.has_labels);
        let has_values = i32::from(st.has_values);
        let blocks = ((rows * p.inputs()).div_ceil(256)).clamp(1, 1024) as u32;
        let f = &self.device.functions[GATHER];
        let mut b = self.stream.launch_builder(f);
        b.arg(&mut st.x)
            .arg(&mut st.labels)
            .arg(&mut st.values)
            .arg(data)
            .arg(labels)
            .arg(values)
            .arg(&st.slot_of_lane)
            .arg(&slot_rows)
            .arg(&use_index)
            .arg(&st.order)
            .arg(&index_stride)
            .arg(&offset)
            .arg(&rows_i)
            .arg(&cols)
            .arg(&batch)
            .arg(&has_labels)
            .arg(&has_values);
        let cfg = grid((blocks, p.lanes as u32, 1), 256);
        // SAFETY: the arguments match the kernel's parameters in order and type, and every
        // index the kernel forms is inside the buffers `prepare` sized from the same shapes.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver)
    }
}

impl Backend for CudaBackend<'_> {
    fn prepare(&mut self, p: &Prepared, slots: &[Slot]) -> Result<(), String> {
        let s = &self.stream;
        // Each slot's features straight into its place: no host copy of them all.
        let features =
            |rows: usize, of: &dyn Fn(&Slot) -> &[f32]| -> Result<CudaSlice<f32>, String> {
                let per_slot = rows * p.inputs();
                let mut dst = zeros::<f32>(s, slots.len() * per_slot)?;
                for (i, slot) in slots.iter().enumerate() {
                    let src = of(slot);
                    if src.len() != per_slot {
                        return Err(format!(
                            "slot {i} has {} features, not {per_slot}",
                            src.len()
                        ));
                    }
                    s.memcpy_htod(src, &mut dst.slice_mut(i * per_slot..(i + 1) * per_slot))
                        .map_err(driver)?;
                }
                Ok(dst)
            };
        if p.lanes > 65_535 {
            return Err(format!("{} lanes in one batch; at most 65535", p.lanes));
        }
        let batch_rows = p.lanes * p.batch;
        let per_layer = |f: &dyn Fn(&crate::batched::LayerLayout) -> usize| {
            p.layers
                .iter()
                .map(|l| zeros::<f32>(s, batch_rows * f(l)))
                .collect::<Result<Vec<_>, _>>()
        };
        let params_len = p.lanes * p.params_per_lane;
        self.state = Some(State {
            train_x: features(p.train_rows, &|slot| &slot.train.features)?,
            valid_x: features(p.valid_rows, &|slot| &slot.valid.features)?,
            train_labels: upload(s, &p.train_labels)?,
            valid_labels: upload(s, &p.valid_labels)?,
            train_values: upload(s, &p.train_values)?,
            valid_values: upload(s, &p.valid_values)?,
            order: upload(s, &p.order)?,
            slot_of_lane: upload(s, &p.slot_of_lane)?,
            tables: upload(s, &p.tables)?,
            table_of_lane: upload(s, &p.table_of_lane)?,
            params: upload(s, &p.params)?,
            grads: zeros(s, params_len)?,
            m: zeros(s, params_len)?,
            v: zeros(s, params_len)?,
            reg_grad: zeros(s, if p.regularized { params_len } else { 1 })?,
            penalty: zeros(s, p.lanes)?,
            step_loss: zeros(s, p.lanes)?,
            x: zeros(s, batch_rows * p.inputs())?,
            labels: zeros(s, batch_rows)?,
            values: zeros(s, batch_rows)?,
            a: per_layer(&|l| l.fan_out)?,
            s: per_layer(&|l| l.fan_out)?,
            dz: per_layer(&|l| l.fan_out)?,
            valid_loss: zeros(s, p.lanes)?,
            correct: zeros(s, p.lanes)?,
            failed_step: zeros(s, p.lanes)?,
            failed_loss: zeros(s, p.lanes)?,
            has_labels: !p.train_labels.is_empty(),
            has_values: !p.train_values.is_empty(),
            p: p.shape(),
        });
        Ok(())
    }

    fn gather_train(&mut self, step: usize, rows: usize) -> Result<(), String> {
        self.gather(true, step, rows)
    }

    fn gather_valid(&mut self, start: usize, rows: usize) -> Result<(), String> {
        self.gather(false, start, rows)
    }

    fn forward(&mut self, layer: usize, rows: usize, slopes: bool) -> Result<(), String> {
        let st = self
            .state
            .as_mut()
            .ok_or("the backend was used before `prepare`")?;
        let p = &st.p;
        let l = p.layers[layer];
        let hidden = layer + 1 < p.layers.len();
        let mode: i32 = match (hidden, slopes) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        let (in_width, out_width) = (as_i32(l.fan_in)?, as_i32(l.fan_out)?);
        let (ppl, w_off, b_off) = (as_i32(p.params_per_lane)?, as_i32(l.w)?, as_i32(l.b)?);
        let (rows_i, batch) = (as_i32(rows)?, as_i32(p.batch)?);
        let (below, here) = st.a.split_at_mut(layer);
        let input = if layer == 0 { &st.x } else { &below[layer - 1] };
        // The output layer's z goes where a hidden layer's activation would.
        let out = &mut here[0];
        let f = &self.device.functions[FORWARD];
        let mut b = self.stream.launch_builder(f);
        b.arg(input)
            .arg(&in_width)
            .arg(&st.params)
            .arg(&ppl)
            .arg(&w_off)
            .arg(&b_off);
        b.arg(&*out).arg(&*out);
        b.arg(&mut st.s[layer])
            .arg(&rows_i)
            .arg(&out_width)
            .arg(&batch)
            .arg(&mode)
            .arg(&st.table_of_lane)
            .arg(&st.tables);
        let cfg = grid((tiles(l.fan_out), tiles(rows), p.lanes as u32), 256);
        // SAFETY: as in `gather`; z and a alias one buffer, and the kernel writes only one of
        // them for a given mode.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver)
    }

    fn loss(&mut self, rows: usize, step: Option<u64>) -> Result<(), String> {
        let st = self
            .state
            .as_mut()
            .ok_or("the backend was used before `prepare`")?;
        let p = &st.p;
        let last = p.layers.len() - 1;
        let classes: i32 = match p.objective {
            Objective::Classification { classes } => as_i32(classes)?,
            Objective::Regression => 0,
        };
        let (rows_i, batch) = (as_i32(rows)?, as_i32(p.batch)?);
        let step = step.unwrap_or(0);
        let f = &self.device.functions[LOSS];
        let mut b = self.stream.launch_builder(f);
        b.arg(&st.a[last])
            .arg(&st.labels)
            .arg(&st.values)
            .arg(&mut st.dz[last])
            .arg(&rows_i)
            .arg(&classes)
            .arg(&batch)
            .arg(&step)
            .arg(&mut st.step_loss)
            .arg(&mut st.valid_loss)
            .arg(&mut st.correct);
        let cfg = grid((p.lanes as u32, 1, 1), 128);
        // SAFETY: as in `gather`.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver)
    }

    fn backward(&mut self, layer: usize, rows: usize) -> Result<(), String> {
        let st = self
            .state
            .as_mut()
            .ok_or("the backend was used before `prepare`")?;
        let p = &st.p;
        let l = p.layers[layer];
        let (in_width, out_width) = (as_i32(l.fan_in)?, as_i32(l.fan_out)?);
        let (ppl, w_off, b_off) = (as_i32(p.params_per_lane)?, as_i32(l.w)?, as_i32(l.b)?);
        let (rows_i, batch) = (as_i32(rows)?, as_i32(p.batch)?);
        let lanes = p.lanes as u32;
        let input = if layer == 0 { &st.x } else { &st.a[layer - 1] };
        {
            let mut b = self
                .stream
                .launch_builder(&self.device.functions[WEIGHT_GRAD]);
            b.arg(&st.dz[layer])
                .arg(input)
                .arg(&mut st.grads)
                .arg(&ppl)
                .arg(&w_off)
                .arg(&rows_i)
                .arg(&out_width)
                .arg(&in_width)
                .arg(&batch);
            let cfg = grid((tiles(l.fan_in), tiles(l.fan_out), lanes), 256);
            // SAFETY: as in `gather`.
            unsafe { b.launch(cfg) }.map_err(driver)?;
        }
        {
            let mut b = self
                .stream
                .launch_builder(&self.device.functions[BIAS_GRAD]);
            b.arg(&st.dz[layer])
                .arg(&mut st.grads)
                .arg(&ppl)
                .arg(&b_off)
                .arg(&rows_i)
                .arg(&out_width)
                .arg(&batch);
            let cfg = grid((l.fan_out.div_ceil(128) as u32, lanes, 1), 128);
            // SAFETY: as in `gather`.
            unsafe { b.launch(cfg) }.map_err(driver)?;
        }
        if layer == 0 {
            return Ok(());
        }
        let (below, here) = st.dz.split_at_mut(layer);
        let mut b = self
            .stream
            .launch_builder(&self.device.functions[INPUT_GRAD]);
        b.arg(&here[0])
            .arg(&st.params)
            .arg(&ppl)
            .arg(&w_off)
            .arg(&st.s[layer - 1])
            .arg(&mut below[layer - 1])
            .arg(&rows_i)
            .arg(&out_width)
            .arg(&in_width)
            .arg(&batch);
        let cfg = grid((tiles(l.fan_in), tiles(rows), lanes), 256);
        // SAFETY: as in `gather`.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver)
    }

    fn weights(&mut self, into: &mut [f32]) -> Result<(), String> {
        let st = self.state()?;
        self.stream.memcpy_dtoh(&st.params, into).map_err(driver)
    }

    fn failed_steps(&mut self) -> Result<Vec<u64>, String> {
        let st = self.state()?;
        self.stream.clone_dtoh(&st.failed_step).map_err(driver)
    }

    fn set_regularization(&mut self, penalty: &[f64], grad: &[f32]) -> Result<(), String> {
        let st = self
            .state
            .as_mut()
            .ok_or("the backend was used before `prepare`")?;
        self.stream
            .memcpy_htod(penalty, &mut st.penalty)
            .map_err(driver)?;
        self.stream
            .memcpy_htod(grad, &mut st.reg_grad)
            .map_err(driver)
    }

    fn update(&mut self, step: u64) -> Result<(), String> {
        let st = self
            .state
            .as_mut()
            .ok_or("the backend was used before `prepare`")?;
        let p = &st.p;
        let n = (p.lanes * p.params_per_lane) as i64;
        let has_reg = i32::from(p.regularized);
        {
            let lanes = as_i32(p.lanes)?;
            let mut b = self
                .stream
                .launch_builder(&self.device.functions[CHECK_LOSS]);
            b.arg(&st.step_loss)
                .arg(&st.penalty)
                .arg(&mut st.failed_step)
                .arg(&mut st.failed_loss)
                .arg(&lanes)
                .arg(&step);
            let cfg = grid((p.lanes.div_ceil(128) as u32, 1, 1), 128);
            // SAFETY: as in `gather`.
            unsafe { b.launch(cfg) }.map_err(driver)?;
        }
        let cfg = grid(
            ((n as usize).div_ceil(256).clamp(1, 4096) as u32, 1, 1),
            256,
        );
        match p.optimizer {
            Optimizer::Adam(c) => {
                // The step's constants as kernels::adam_step computes them, in f32 on the host.
                let t = i32::try_from(step).unwrap_or(i32::MAX);
                let step_size = c.lr / (1.0 - c.beta1.powi(t));
                let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
                let mut b = self.stream.launch_builder(&self.device.functions[ADAM]);
                b.arg(&mut st.params)
                    .arg(&st.grads)
                    .arg(&has_reg)
                    .arg(&st.reg_grad)
                    .arg(&mut st.m)
                    .arg(&mut st.v)
                    .arg(&n)
                    .arg(&c.beta1)
                    .arg(&c.beta2)
                    .arg(&c.eps)
                    .arg(&step_size)
                    .arg(&bias2_sqrt);
                // SAFETY: as in `gather`.
                unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver)
            }
            Optimizer::Sgd { lr } => {
                let mut b = self.stream.launch_builder(&self.device.functions[SGD]);
                b.arg(&mut st.params)
                    .arg(&st.grads)
                    .arg(&has_reg)
                    .arg(&st.reg_grad)
                    .arg(&n)
                    .arg(&lr);
                // SAFETY: as in `gather`.
                unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver)
            }
        }
    }

    fn finish(&mut self) -> Result<Vec<LaneTotals>, String> {
        let st = self.state()?;
        let s = &self.stream;
        let valid_loss = s.clone_dtoh(&st.valid_loss).map_err(driver)?;
        let correct = s.clone_dtoh(&st.correct).map_err(driver)?;
        let failed_step = s.clone_dtoh(&st.failed_step).map_err(driver)?;
        let failed_loss = s.clone_dtoh(&st.failed_loss).map_err(driver)?;
        Ok((0..st.p.lanes)
            .map(|i| LaneTotals {
                valid_loss: valid_loss[i],
                correct: correct[i],
                failed_step: failed_step[i],
                failed_loss: failed_loss[i],
            })
            .collect())
    }
}
