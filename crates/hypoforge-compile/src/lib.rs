//! Turns one hypothesis source file into a WebAssembly plugin.
//!
//! 1. The [`policy`] refuses forbidden constructs before rustc reads a byte.
//! 2. rustc runs with an empty environment in a private directory, under a wall-clock timeout
//!    and memory, CPU and file-size limits, against the guest SDK prebuilt for wasm32 when this
//!    crate was built (embedded in the binary, unpacked once into the cache).
//! 3. Results are content-addressed: the same source under the same toolchain and SDK never
//!    compiles twice.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hypoforge_spec::{ErrorClass, ErrorRecord};
use sha2::{Digest, Sha256};

mod guest;
pub mod policy;
mod rustc;
mod selects;

pub use selects::rewrite as branch_free_selects;

include!(concat!(env!("OUT_DIR"), "/guest_libs.rs"));

/// Bumped when the rustc invocation or crate root change, so cached modules are not reused (the
/// codegen flags in `guest.rs` are part of the cache key themselves).
const RECIPE_VERSION: &str = "hypoforge-compile/2";

/// Limits on what compiling one hypothesis may cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_source_bytes: usize,
    /// Wall-clock limit for rustc.
    pub rustc_timeout: Duration,
    /// Address-space limit for rustc.
    pub rustc_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_source_bytes: policy::DEFAULT_MAX_SOURCE_BYTES,
            rustc_timeout: Duration::from_secs(15),
            rustc_memory_bytes: 2 << 30,
        }
    }
}

/// Why a hypothesis did not become a module.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct CompileError {
    pub class: ErrorClass,
    pub message: String,
}

impl From<CompileError> for ErrorRecord {
    fn from(e: CompileError) -> Self {
        ErrorRecord {
            class: e.class,
            message: e.message,
        }
    }
}

/// The native build of a hypothesis: a shared library exporting the SDK's native table, for
/// the fast path's worker processes (never loaded into the process that compiled it).
#[derive(Clone, Debug)]
pub struct NativeLibrary {
    /// Where the library lies: in the module cache, or in the compiler's scratch directory.
    pub path: PathBuf,
    /// The hypothesis's identity: SHA-256 of its source.
    pub source_hash: String,
    pub cached: bool,
    pub elapsed: Duration,
}

/// A compiled hypothesis.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub wasm: Vec<u8>,
    /// The hypothesis's identity: SHA-256 of its source.
    pub source_hash: String,
    /// Whether the module came from the cache.
    pub cached: bool,
    pub elapsed: Duration,
}

/// Compiles hypotheses; cheap to share across threads.
#[derive(Debug)]
pub struct Compiler {
    rustc: PathBuf,
    guest_libs: PathBuf,
    sdk_rlib: PathBuf,
    modules: Option<PathBuf>,
    limits: Limits,
    /// Identifies toolchain + SDK + recipe in cache keys.
    recipe_digest: String,
    /// Where native libraries and their SDK go: the cache, or the scratch directory.
    native_root: PathBuf,
    /// Keeps an uncached compiler's unpacked guest libraries alive.
    _scratch: Option<tempfile::TempDir>,
}

impl Compiler {
    /// A compiler whose modules and unpacked SDK live under `cache_dir` (see
    /// [`default_cache_dir`]); `None` compiles without a cache.
    pub fn new(cache_dir: Option<&Path>, limits: Limits) -> Result<Compiler, CompileError> {
        let rustc = rustc::locate_rustc(BUILD_SYSROOT);
        check_toolchain(&rustc)?;
        let libs_digest = guest_libs_digest();
        let (root, scratch) = match cache_dir {
            // rustc runs in a private directory, so a relative cache path would point elsewhere.
            Some(dir) => (
                std::path::absolute(dir).map_err(|e| {
                    io_error(format!(
                        "cannot resolve the cache path {}: {e}",
                        dir.display()
                    ))
                })?,
                None,
            ),
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("hypoforge-cache-")
                    .tempdir()
                    .map_err(|e| internal(format!("cannot create a scratch directory: {e}")))?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let guest_libs = unpack_libs(
            GUEST_LIBS,
            &root.join("guest-libs").join(&libs_digest[..16]),
        )?;
        let sdk_rlib = sdk_rlib(GUEST_LIBS, &guest_libs)?;
        let modules = match cache_dir {
            Some(_) => {
                let dir = root.join("modules");
                std::fs::create_dir_all(&dir).map_err(|e| {
                    io_error(format!("cannot create the cache at {}: {e}", dir.display()))
                })?;
                Some(dir)
            }
            None => None,
        };
        let recipe_digest = hex::encode(Sha256::digest(format!(
            "{RECIPE_VERSION}\n{BUILD_RUSTC_VERSION}\n{libs_digest}\n{}\n{:?}\n{}",
            guest::TARGET_FEATURES,
            guest::HYPOTHESIS_CODEGEN,
            guest::LIBRARY_RUSTFLAGS
        )));
        Ok(Compiler {
            rustc,
            guest_libs,
            sdk_rlib,
            modules,
            limits,
            recipe_digest,
            native_root: root.join("native"),
            _scratch: scratch,
        })
    }

    /// Compile one hypothesis for this machine, as a shared library for the native fast path.
    ///
    /// The source passes the same policy and is built from the same crate root (`no_std`,
    /// `forbid(unsafe_code)`, the author's file included) under the same limits as the
    /// WebAssembly build; only the target and the SDK's libraries differ. Needs a C linker
    /// (`cc`, or `HYPOFORGE_LINKER`). Cached like modules, under its own recipe.
    pub fn compile_native(&self, source: &[u8]) -> Result<NativeLibrary, CompileError> {
        let started = Instant::now();
        let source_hash = hypoforge_spec::source_hash(source);
        let checked = self.police(source)?;
        let (libs_digest, recipe) = native_recipe();
        let key = hex::encode(Sha256::digest(format!("{recipe}\n{checked}")));
        let dir = self.native_root.join("libraries");
        let path = dir.join(format!("{key}.so"));
        if path.exists() {
            return Ok(NativeLibrary {
                path,
                source_hash,
                cached: true,
                elapsed: started.elapsed(),
            });
        }
        let libs = unpack_libs(
            NATIVE_LIBS,
            &self.native_root.join("sdk").join(&libs_digest[..16]),
        )?;
        let sdk_rlib = sdk_rlib(NATIVE_LIBS, &libs)?;
        let linker = locate_linker()?;
        let bytes = rustc::Invocation {
            rustc: &self.rustc,
            libs: &libs,
            sdk_rlib: &sdk_rlib,
            limits: &self.limits,
            output: rustc::Output::Native { linker: &linker },
        }
        .run(&checked)?;
        std::fs::create_dir_all(&dir)
            .and_then(|()| write_atomically(&path, &bytes))
            .map_err(|e| {
                io_error(format!(
                    "cannot keep the native library in {}: {e}",
                    dir.display()
                ))
            })?;
        Ok(NativeLibrary {
            path,
            source_hash,
            cached: false,
            elapsed: started.elapsed(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The source as rustc will see it, or the policy's refusal.
    fn police(&self, source: &[u8]) -> Result<String, CompileError> {
        policy::check(source, self.limits.max_source_bytes).map_err(|v| CompileError {
            class: ErrorClass::Policy,
            message: v.to_string(),
        })
    }

    /// Compile one hypothesis source.
    pub fn compile(&self, source: &[u8]) -> Result<Compiled, CompileError> {
        let started = Instant::now();
        let source_hash = hypoforge_spec::source_hash(source);
        let checked = self.police(source)?;
        let key = hex::encode(Sha256::digest(format!("{}\n{checked}", self.recipe_digest)));
        if let Some(hit) = self.cached(&key) {
            return hit.map(|wasm| Compiled {
                wasm,
                source_hash,
                cached: true,
                elapsed: started.elapsed(),
            });
        }
        let outcome = rustc::Invocation {
            rustc: &self.rustc,
            libs: &self.guest_libs,
            sdk_rlib: &self.sdk_rlib,
            limits: &self.limits,
            output: rustc::Output::Wasm,
        }
        .run(&checked);
        self.remember(&key, &outcome);
        outcome.map(|wasm| Compiled {
            wasm,
            source_hash,
            cached: false,
            elapsed: started.elapsed(),
        })
    }

    fn cached(&self, key: &str) -> Option<Result<Vec<u8>, CompileError>> {
        let dir = self.modules.as_ref()?;
        if let Ok(wasm) = std::fs::read(dir.join(format!("{key}.wasm"))) {
            return Some(Ok(wasm));
        }
        let failure = std::fs::read(dir.join(self.failure_file(key))).ok()?;
        let record: ErrorRecord = serde_json::from_slice(&failure).ok()?;
        Some(Err(CompileError {
            class: record.class,
            message: record.message,
        }))
    }

    /// A failure is only known to hold under the limits it was seen with.
    fn failure_file(&self, key: &str) -> String {
        let limits = format!(
            "{}:{}",
            self.limits.rustc_timeout.as_millis(),
            self.limits.rustc_memory_bytes
        );
        let tag = hex::encode(&Sha256::digest(limits)[..6]);
        format!("{key}.{tag}.error.json")
    }

    /// Store successes and rustc's verdicts; resource-limit failures depend on the limits
    /// and the machine's load, so those are tried again next time.
    fn remember(&self, key: &str, outcome: &Result<Vec<u8>, CompileError>) {
        let Some(dir) = &self.modules else { return };
        let (name, bytes) = match outcome {
            Ok(wasm) => (format!("{key}.wasm"), wasm.clone()),
            Err(e) if e.class == ErrorClass::Compile => {
                let record = ErrorRecord::from(e.clone());
                let Ok(json) = serde_json::to_vec(&record) else {
                    return;
                };
                (self.failure_file(key), json)
            }
            Err(_) => return,
        };
        // A failed cache write only costs a recompile later.
        let _ = write_atomically(&dir.join(name), &bytes);
    }
}

/// Where modules are cached unless told otherwise: `$HYPOFORGE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/hypoforge`, else `~/.cache/hypoforge`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HYPOFORGE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("hypoforge");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("hypoforge"),
        None => std::env::temp_dir().join("hypoforge-cache"),
    }
}

fn check_toolchain(rustc: &Path) -> Result<(), CompileError> {
    let hint = "hypothesis compilation needs the toolchain hypoforge was built with \
                (rust-toolchain.toml pins it: `rustup toolchain install 1.95.0 --target wasm32-unknown-unknown`), \
                or HYPOFORGE_RUSTC pointing at that rustc";
    let out = Command::new(rustc)
        .arg("-vV")
        .env_clear()
        .output()
        .map_err(|e| CompileError {
            class: ErrorClass::Toolchain,
            message: format!("cannot run {}: {e}; {hint}", rustc.display()),
        })?;
    let found = String::from_utf8_lossy(&out.stdout);
    if found.trim() != BUILD_RUSTC_VERSION {
        return Err(CompileError {
            class: ErrorClass::Toolchain,
            message: format!(
                "{} is `{}`, but the guest SDK was built with `{}`; {hint}",
                rustc.display(),
                found.lines().next().unwrap_or("unknown"),
                BUILD_RUSTC_VERSION.lines().next().unwrap_or("unknown"),
            ),
        });
    }
    Ok(())
}

fn guest_libs_digest() -> String {
    libs_digest(GUEST_LIBS)
}

/// The digest of the embedded native libraries, and of everything else that decides a native
/// build (the cache key's recipe); computed once, as the libraries are megabytes.
fn native_recipe() -> &'static (String, String) {
    static RECIPE: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    RECIPE.get_or_init(|| {
        let libs = libs_digest(NATIVE_LIBS);
        let recipe = hex::encode(Sha256::digest(format!(
            "{RECIPE_VERSION}\n{BUILD_RUSTC_VERSION}\n{libs}\n{NATIVE_TARGET}\n{:?}\n{}",
            guest::NATIVE_CODEGEN,
            guest::NATIVE_LIBRARY_RUSTFLAGS
        )));
        (libs, recipe)
    })
}

fn libs_digest(libs: &[(&str, &[u8])]) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in libs {
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

/// Where the SDK's own rlib of `libs`, unpacked in `dir`, lies.
fn sdk_rlib(libs: &[(&str, &[u8])], dir: &Path) -> Result<PathBuf, CompileError> {
    libs.iter()
        .find(|(name, _)| name.starts_with("libhypoforge_sdk"))
        .map(|(name, _)| dir.join(name))
        .ok_or_else(|| internal("the embedded libraries lack hypoforge_sdk".into()))
}

/// Write the embedded rlibs into `dir` once; concurrent writers each rename a complete copy.
fn unpack_libs(libs: &[(&str, &[u8])], dir: &Path) -> Result<PathBuf, CompileError> {
    let complete = dir.join(".complete");
    if complete.exists() {
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| io_error(format!("cannot create {}: {e}", dir.display())))?;
    for (name, bytes) in libs {
        write_atomically(&dir.join(name), bytes)
            .map_err(|e| io_error(format!("cannot unpack the SDK into {}: {e}", dir.display())))?;
    }
    write_atomically(&complete, b"")
        .map_err(|e| io_error(format!("cannot write {}: {e}", complete.display())))?;
    Ok(dir.to_path_buf())
}

/// The C linker native builds use: `HYPOFORGE_LINKER`, else `cc` on `PATH`.
fn locate_linker() -> Result<PathBuf, CompileError> {
    if let Some(linker) = std::env::var_os("HYPOFORGE_LINKER") {
        let linker = PathBuf::from(linker);
        if !linker.is_file() {
            return Err(CompileError {
                class: ErrorClass::Toolchain,
                message: format!(
                    "HYPOFORGE_LINKER names {}, which is not a file; point it at a C compiler \
                     driver such as /usr/bin/cc, or unset it to use `cc` on PATH",
                    linker.display()
                ),
            });
        }
        return Ok(linker);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("cc"))
        .find(|cc| cc.is_file())
        .ok_or_else(|| CompileError {
            class: ErrorClass::Toolchain,
            message: "native plugins are linked by a C compiler driver, and there is no `cc` on \
                      PATH; install one (Debian: `apt install gcc`) or set HYPOFORGE_LINKER to it"
                .into(),
        })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn internal(message: String) -> CompileError {
    CompileError {
        class: ErrorClass::Internal,
        message,
    }
}

fn io_error(message: String) -> CompileError {
    CompileError {
        class: ErrorClass::Io,
        message,
    }
}
