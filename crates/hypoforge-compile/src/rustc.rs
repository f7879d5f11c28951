//! Running rustc on untrusted source: clean environment, private directory, resource limits,
//! and a wall-clock timeout that kills the whole process group.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hypoforge_spec::ErrorClass;

use crate::{CompileError, Limits};

/// Largest module accepted from rustc: what the sandbox will load.
const MAX_WASM_BYTES: u64 = hypoforge_spec::abi::MAX_MODULE_BYTES as u64;
/// How much of rustc's diagnostics is kept.
const MAX_DIAGNOSTIC_BYTES: usize = 32 * 1024;

/// Where the wrapper puts the hypothesis; rustc's messages name this file.
pub(crate) const HYPOTHESIS_FILE: &str = "hypothesis.rs";

/// The crate root: sets the crate's attributes and links the SDK, then includes the author's
/// file, so the author controls neither.
const CRATE_ROOT: &str = "#![no_std]\n#![forbid(unsafe_code)]\nextern crate hypoforge_sdk;\ninclude!(\"hypothesis.rs\");\n";

/// What one build produces: the WebAssembly module, or the native shared library of the fast
/// path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output<'a> {
    Wasm,
    /// For the machine hypoforge runs on, linked by `linker` (a C compiler driver; rustc's
    /// environment is empty, so it is named).
    Native {
        linker: &'a Path,
    },
}

pub(crate) struct Invocation<'a> {
    pub rustc: &'a Path,
    pub libs: &'a Path,
    pub sdk_rlib: &'a Path,
    pub limits: &'a Limits,
    pub output: Output<'a>,
}

/// Largest native library accepted: the SDK, the author's code and the standard library.
const MAX_NATIVE_BYTES: u64 = 64 << 20;

impl Invocation<'_> {
    /// Compile `source` to a WebAssembly module or a native library.
    pub fn run(&self, source: &str) -> Result<Vec<u8>, CompileError> {
        let dir = tempfile::Builder::new()
            .prefix("hypoforge-rustc-")
            .tempdir()
            .map_err(|e| internal(format!("cannot create a private build directory: {e}")))?;
        let root = dir.path().join("root.rs");
        std::fs::write(dir.path().join(HYPOTHESIS_FILE), source)
            .and_then(|()| std::fs::write(&root, CRATE_ROOT))
            .map_err(|e| internal(format!("cannot write the hypothesis: {e}")))?;
        let (out, max_bytes) = match self.output {
            Output::Wasm => (dir.path().join("plugin.wasm"), MAX_WASM_BYTES),
            Output::Native { .. } => (dir.path().join("plugin.so"), MAX_NATIVE_BYTES),
        };

        let mut cmd = Command::new(self.rustc);
        cmd.current_dir(dir.path())
            .env_clear()
            .env("TMPDIR", dir.path())
            .args([
                "--edition",
                "2021",
                "--crate-type",
                "cdylib",
                "--crate-name",
                "hypothesis",
                "--color",
                "never",
                "-C",
                "opt-level=3",
                "-C",
                "debuginfo=0",
            ]);
        match self.output {
            Output::Wasm => {
                cmd.args(["--target", crate::guest::TARGET])
                    .args(["-C", "panic=abort", "-C", crate::guest::TARGET_FEATURES])
                    .args(
                        crate::guest::HYPOTHESIS_CODEGEN
                            .iter()
                            .flat_map(|flag| ["-C", flag]),
                    );
            }
            Output::Native { linker } => {
                cmd.args(["--target", crate::NATIVE_TARGET])
                    .args(["-C", "panic=unwind", "--cfg", "hypoforge_native"])
                    .args(
                        crate::guest::NATIVE_CODEGEN
                            .iter()
                            .flat_map(|flag| ["-C", flag]),
                    )
                    .arg("-C")
                    .arg(format!("linker={}", linker.display()));
                // The linker driver finds its assembler and loader through PATH.
                let mut path = std::ffi::OsString::new();
                if let Some(dir) = linker.parent() {
                    path.push(dir);
                    path.push(":");
                }
                path.push("/usr/bin:/bin");
                cmd.env("PATH", path);
            }
        }
        cmd.args([
            "-C",
            "strip=symbols",
            "-C",
            "codegen-units=1",
            "-A",
            "warnings",
        ])
        .arg("--extern")
        .arg(format!("hypoforge_sdk={}", self.sdk_rlib.display()))
        .arg("-L")
        .arg(format!("dependency={}", self.libs.display()))
        .arg("root.rs")
        .arg("-o")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills rustc and the linker it spawned.
        .process_group(0);
        let memory = self.limits.rustc_memory_bytes;
        let cpu = self.limits.rustc_timeout.as_secs() + 2;
        // SAFETY: the closure only calls async-signal-safe setrlimit between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                set_limit(libc::RLIMIT_AS, memory)?;
                set_limit(libc::RLIMIT_CPU, cpu)?;
                set_limit(libc::RLIMIT_FSIZE, max_bytes * 4)?;
                set_limit(libc::RLIMIT_CORE, 0)?;
                set_limit(libc::RLIMIT_NOFILE, 256)?;
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| CompileError {
            class: ErrorClass::Toolchain,
            message: format!("cannot start {}: {e}", self.rustc.display()),
        })?;
        let stderr = drain(child.stderr.take());
        let stdout = drain(child.stdout.take());
        let status = wait_or_kill(&mut child, self.limits.rustc_timeout);
        let diagnostics = join_diagnostics(stderr, stdout);
        let Some(status) = status else {
            return Err(CompileError {
                class: ErrorClass::CompileTimeout,
                message: format!(
                    "rustc did not finish within {:.1}s and was stopped (a compile-time bomb?)",
                    self.limits.rustc_timeout.as_secs_f64()
                ),
            });
        };
        if !status.success() {
            return Err(rustc_failure(
                status,
                &diagnostics,
                self.limits,
                started.elapsed(),
            ));
        }
        let len = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        if len > max_bytes {
            return Err(CompileError {
                class: ErrorClass::CompileResourceLimit,
                message: format!("the build is {len} bytes; the limit is {max_bytes}"),
            });
        }
        let bytes = std::fs::read(&out)
            .map_err(|e| internal(format!("rustc succeeded but left no output: {e}")))?;
        match self.output {
            Output::Wasm => crate::selects::rewrite(&bytes)
                .map_err(|e| internal(format!("cannot rewrite the module's float selects: {e}"))),
            Output::Native { .. } => Ok(bytes),
        }
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Read a pipe to its end on a thread (so a chatty rustc never blocks on a full pipe).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(pipe) = pipe {
            let mut buf = [0u8; 8192];
            let mut pipe = pipe;
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = MAX_DIAGNOSTIC_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        kept
    })
}

fn join_diagnostics(
    stderr: std::thread::JoinHandle<Vec<u8>>,
    stdout: std::thread::JoinHandle<Vec<u8>>,
) -> String {
    let mut text = stderr.join().unwrap_or_default();
    text.extend(stdout.join().unwrap_or_default());
    String::from_utf8_lossy(&text).trim_end().to_owned()
}

/// Wait for `child`; past `timeout`, kill its process group and return `None`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                kill_group(child);
                return None;
            }
        }
    }
}

fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: signalling a process group we created; a stale id at worst yields ESRCH.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn rustc_failure(
    status: std::process::ExitStatus,
    diagnostics: &str,
    limits: &Limits,
    elapsed: Duration,
) -> CompileError {
    let resource = match status.signal() {
        Some(libc::SIGXCPU) => Some("its CPU-time limit"),
        Some(libc::SIGXFSZ) => Some("its output-size limit"),
        Some(libc::SIGKILL) | Some(libc::SIGSEGV) | Some(libc::SIGABRT) | Some(libc::SIGBUS) => {
            Some("its memory limit (or crashed)")
        }
        _ => None,
    }
    .or_else(|| {
        // What rustc, or the loader starting it, says when the address-space limit bites.
        let oom = [
            "memory allocation of",
            "out of memory",
            "Cannot allocate memory",
            "failed to allocate",
            "tried to allocate more memory than available",
            // The loader cannot even map rustc's own libraries under the limit.
            "error while loading shared libraries",
            "failed to map segment",
        ];
        oom.iter()
            .any(|m| diagnostics.contains(m))
            .then_some("its memory limit")
    });
    match resource {
        Some(what) => CompileError {
            class: ErrorClass::CompileResourceLimit,
            message: format!(
                "rustc hit {what} ({} MiB address space) after {:.1}s and was stopped (a compile-time bomb?)\n{}",
                limits.rustc_memory_bytes >> 20,
                elapsed.as_secs_f64(),
                tail(diagnostics, 2000)
            ),
        },
        None => CompileError {
            class: ErrorClass::Compile,
            message: if diagnostics.is_empty() {
                format!("rustc failed ({status}) without a message")
            } else {
                diagnostics.to_owned()
            },
        },
    }
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn internal(message: String) -> CompileError {
    CompileError {
        class: ErrorClass::Internal,
        message,
    }
}

/// The rustc binary to use: `HYPOFORGE_RUSTC` when set, else the one the SDK was built with.
pub(crate) fn locate_rustc(build_sysroot: &str) -> PathBuf {
    std::env::var_os("HYPOFORGE_RUSTC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(build_sysroot).join("bin").join("rustc"))
}
