//! The shipped baseline plugins all pass validation, and guest and host agree on the ABI.

use std::path::PathBuf;

use hypoforge_tests::*;

/// The `.rs` files under `plugins/<kind>/`, sorted.
fn plugins_of(kind: ComponentKind) -> Vec<PathBuf> {
    let dir = workspace_root().join("plugins").join(kind.as_str());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {kind} plugins in {}", dir.display());
    files
}

fn all_validate(kind: ComponentKind) {
    for path in plugins_of(kind) {
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let what = path.display().to_string();
        let report = within_bound(&what, || validate_wasm(&compile(&source), Some(kind)));
        assert_valid(&report, &what);
        let meta = report.meta.as_ref().expect("a valid plugin has metadata");
        assert_eq!(meta.kind, kind, "{what}");
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        assert_eq!(
            Some(meta.name.clone()),
            stem,
            "{what}: the plugin's name should match its file"
        );
    }
}

#[test]
fn baseline_activations_validate() {
    all_validate(ComponentKind::Activation);
}

#[test]
fn baseline_preprocessors_validate() {
    all_validate(ComponentKind::Preprocessor);
}

#[test]
fn baseline_regularizers_validate() {
    all_validate(ComponentKind::Regularizer);
}

#[test]
fn plugins_are_sorted_into_one_directory_per_kind() {
    let mut dirs: Vec<String> = std::fs::read_dir(workspace_root().join("plugins"))
        .expect("the plugins directory exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let kinds: Vec<String> = ComponentKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(dirs, kinds);
}

#[test]
fn sdk_and_host_agree_on_the_abi_version() {
    // `ABI_VERSION` here is the host's, `hypoforge_spec::abi::ABI_VERSION`.
    assert_eq!(hypoforge_sdk::ABI_VERSION, ABI_VERSION);
}

#[test]
fn compiled_plugins_carry_the_abi_and_metadata_sections() {
    let wasm = compile(include_str!("../../../plugins/regularizer/l2.rs"));
    let info = hypoforge_sandbox::inspect(&wasm).expect("a compiled plugin parses");
    assert_eq!(info.abi_version, Some(ABI_VERSION));
    assert!(
        info.imports.is_empty(),
        "compiled plugins import nothing: {:?}",
        info.imports
    );
    let meta = info.meta.as_deref().expect("a metadata section");
    let meta = hypoforge_spec::PluginMeta::parse(meta).expect("readable metadata");
    assert_eq!(meta.kind, ComponentKind::Regularizer);
    assert_eq!(meta.name, "l2");
    for export in [
        "memory",
        "hf_alloc",
        "hf_free",
        "hf_panic_message",
        "hf_reg_penalty",
        "hf_reg_gradient",
    ] {
        assert!(
            info.exports.iter().any(|e| e == export),
            "missing {export}: {:?}",
            info.exports
        );
    }
}
