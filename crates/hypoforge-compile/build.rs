//! Prebuilds the guest SDK (and libm, dlmalloc) for wasm32 once, with the same rustc that builds
//! this crate, and embeds the rlibs so hypotheses can link against them at run time.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "src/guest.rs"]
#[allow(dead_code)] // the hypothesis-build half is the library's
mod guest;

const GUEST_TARGET: &str = guest::TARGET;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.join("../..");
    let sdk = workspace.join("crates/hypoforge-sdk");
    println!("cargo:rerun-if-changed={}", sdk.join("src").display());
    println!("cargo:rerun-if-changed=src/guest.rs");
    println!(
        "cargo:rerun-if-changed={}",
        sdk.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let sysroot = capture(Command::new(&rustc).args(["--print", "sysroot"]));
    let version = capture(Command::new(&rustc).arg("-vV"));
    let release = version.lines().next().unwrap_or_default().to_owned();
    let target_libdir = Path::new(&sysroot).join("lib/rustlib").join(GUEST_TARGET);
    if !target_libdir.exists() {
        panic!(
            "\n\nhypoforge compiles hypotheses to {GUEST_TARGET}, but the target is not installed for \
             this toolchain ({release}).\nInstall it with:\n\n    rustup target add {GUEST_TARGET}\n\n"
        );
    }

    let guest_libs = build_sdk(
        &cargo,
        &rustc,
        &workspace,
        &out_dir.join("guest-target"),
        GUEST_TARGET,
        guest::LIBRARY_RUSTFLAGS,
        "abort",
    );
    // The native fast path links the same SDK for the machine hypoforge runs on, unwinding so
    // that the table's functions can catch an author's panic.
    let native_target = env::var("TARGET").expect("cargo sets TARGET");
    let native_libs = build_sdk(
        &cargo,
        &rustc,
        &workspace,
        &out_dir.join("native-target"),
        &native_target,
        guest::NATIVE_LIBRARY_RUSTFLAGS,
        "unwind",
    );
    let libs = embed(&guest_libs);
    let native = embed(&native_libs);
    let sdk_digest = source_digest(&sdk);
    let code = format!(
        "/// SHA-256 of the guest SDK's manifest and sources, which decide every plugin's math.\n\
         pub const SDK_SOURCE_DIGEST: &str = {sdk_digest:?};\n\
         /// `rustc -vV` of the toolchain the guest libraries were built with.\n\
         pub(crate) const BUILD_RUSTC_VERSION: &str = {version:?};\n\
         /// The sysroot of that toolchain.\n\
         pub(crate) const BUILD_SYSROOT: &str = {sysroot:?};\n\
         /// The guest libraries: (file name, contents).\n\
         pub(crate) static GUEST_LIBS: &[(&str, &[u8])] = &[\n{libs}];\n\
         /// The target native plugins are built for: this build's.\n\
         pub(crate) const NATIVE_TARGET: &str = {native_target:?};\n\
         /// The SDK's libraries for [`NATIVE_TARGET`]: (file name, contents).\n\
         pub(crate) static NATIVE_LIBS: &[(&str, &[u8])] = &[\n{native}];\n"
    );
    std::fs::write(out_dir.join("guest_libs.rs"), code).expect("cannot write guest_libs.rs");
}

/// Builds `hypoforge-sdk` (release) for `target` and returns the rlibs of it and its
/// dependencies.
fn build_sdk(
    cargo: &str,
    rustc: &str,
    workspace: &Path,
    target_dir: &Path,
    target: &str,
    rustflags: &str,
    panic: &str,
) -> Vec<PathBuf> {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
        "-p",
        "hypoforge-sdk",
    ])
    .args(["--target", target])
    .arg("--target-dir")
    .arg(target_dir)
    .arg("--manifest-path")
    .arg(workspace.join("Cargo.toml"))
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    // The outer build's settings (target, flags, wrappers such as clippy) must not leak into
    // the plugin libraries' build; only where cargo and rustup live and how to reach the
    // registry may.
    for (key, _) in env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
        let keep = key == "CARGO_HOME"
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTR");
        let leak = (key.starts_with("CARGO_") && !keep)
            || key.starts_with("RUSTC_")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS";
        if leak {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RUSTC", rustc)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_PANIC", panic)
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    let output = cmd
        .output()
        .expect("cannot run cargo for the plugin SDK build");
    if !output.status.success() {
        panic!("building hypoforge-sdk for {target} failed (see the messages above)");
    }

    // Each compiler-artifact message names the rlib of one crate of the build.
    let mut rlibs = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        for file in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(path) = file.as_str().filter(|p| p.ends_with(".rlib")) {
                rlibs.push(PathBuf::from(path));
            }
        }
    }
    assert!(
        rlibs
            .iter()
            .any(|p| p.to_string_lossy().contains("hypoforge_sdk")),
        "the {target} build produced no hypoforge_sdk rlib"
    );
    rlibs
}

/// `(file name, include_bytes!(path)),` lines for the generated table of embedded rlibs.
fn embed(rlibs: &[PathBuf]) -> String {
    rlibs
        .iter()
        .map(|rlib| {
            let name = rlib
                .file_name()
                .expect("an rlib path has a file name")
                .to_string_lossy();
            format!(
                "    ({name:?}, include_bytes!({:?})),\n",
                rlib.display().to_string()
            )
        })
        .collect()
}

/// Hashes `Cargo.toml` and every file under `src/` of `crate_dir`, by relative path in sorted
/// order, so the digest is the same on every machine that has the same sources.
fn source_digest(crate_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a readable directory entry").path();
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = vec![crate_dir.join("Cargo.toml")];
    walk(&crate_dir.join("src"), &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(crate_dir).expect("under the crate");
        let bytes =
            std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        hasher.update(relative.to_string_lossy().replace('\\', "/").as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    hex::encode(hasher.finalize())
}

fn capture(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
