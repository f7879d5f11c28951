//! The `hypoforge` binary end to end: exit codes, JSON Lines output, and usage errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root (this crate lives in `<root>/crates/hypoforge-cli`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plugins() -> PathBuf {
    root().join("plugins")
}

/// Run `hypoforge` with `args`, a private cache and no inherited cache settings.
fn hypoforge(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hypoforge"))
        .args(args)
        .env_remove("HYPOFORGE_CACHE_DIR")
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("the hypoforge binary runs")
}

/// `hypoforge validate --cache-dir <cache> <args...>`.
fn validate(args: &[&str], cache: &Path) -> Output {
    let cache_dir = cache.to_str().expect("a UTF-8 temporary path");
    let mut all = vec!["validate", "--cache-dir", cache_dir];
    all.extend_from_slice(args);
    hypoforge(&all, cache)
}

fn code(out: &Output) -> i32 {
    out.status
        .code()
        .expect("hypoforge exits normally, not by a signal")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

/// Parse JSON Lines: one object per non-empty line.
fn json_lines(out: &Output) -> Vec<Value> {
    let text = stdout(out);
    assert!(
        text.ends_with('\n'),
        "JSON Lines end with a newline: {text:?}"
    );
    text.lines()
        .map(|line| {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v.is_object(), "each line is an object: {line}");
            v
        })
        .collect()
}

const KEYS: [&str; 9] = [
    "file",
    "kind",
    "name",
    "hash",
    "valid",
    "checks",
    "error",
    "compile_ms",
    "validate_ms",
];

fn assert_shape(line: &Value) {
    let keys: BTreeSet<&str> = line
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, KEYS.into_iter().collect::<BTreeSet<_>>(), "{line}");
    assert!(
        line["file"].is_string() && line["name"].is_string() && line["valid"].is_boolean(),
        "{line}"
    );
    assert!(line["kind"].is_string() || line["kind"].is_null(), "{line}");
    assert!(
        line["compile_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    assert!(
        line["validate_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    let hash = line["hash"].as_str().expect("a string hash");
    assert!(
        hash.is_empty() || (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line}"
    );
    for check in line["checks"].as_array().expect("checks is an array") {
        let keys: BTreeSet<&str> = check
            .as_object()
            .expect("a check object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["detail", "name", "passed"].into_iter().collect(),
            "{check}"
        );
        assert!(
            check["name"].is_string()
                && check["passed"].is_boolean()
                && check["detail"].is_string(),
            "{check}"
        );
    }
}

fn line_for<'a>(lines: &'a [Value], file_name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["file"].as_str().is_some_and(|f| f.ends_with(file_name)))
        .unwrap_or_else(|| panic!("no line for {file_name}: {lines:?}"))
}

#[test]
fn validate_json_on_the_baseline_plugins_succeeds() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let dir = plugins();
    let out = validate(
        &["--json", dir.to_str().expect("a UTF-8 path")],
        cache.path(),
    );
    assert_eq!(
        code(&out),
        0,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let lines = json_lines(&out);
    let mut expected = 0;
    for kind in ["activation", "preprocessor", "regularizer"] {
        for entry in std::fs::read_dir(dir.join(kind)).expect("a plugin directory") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            expected += 1;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a file name");
            let line = line_for(&lines, &format!("{kind}/{stem}.rs"));
            assert_shape(line);
            assert_eq!(line["valid"], true, "{line}");
            assert_eq!(line["error"], Value::Null, "{line}");
            assert_eq!(line["kind"], kind, "{line}");
            assert_eq!(line["name"], stem, "{line}");
            let checks = line["checks"].as_array().expect("checks");
            assert!(checks.len() > 1, "{line}");
            assert!(checks.iter().all(|c| c["passed"] == true), "{line}");
            let source = std::fs::read(&path).expect("the plugin source");
            assert_eq!(line["hash"], sha256_hex(&source), "{line}");
        }
    }
    assert_eq!(lines.len(), expected, "one line per plugin");
    assert!(
        stderr(&out).trim().is_empty(),
        "nothing on stderr with --json: {}",
        stderr(&out)
    );
}

/// SHA-256 in hex, computed with `sha256sum` so the test does not trust the code under test.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum finishes");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

const NAN_ACTIVATION: &str = "use hypoforge_sdk::prelude::*;\nfn f<R: Real>(x: R) -> R { (x - x) / (x - x) }\nactivation!(name = \"nan\", f = f);\n";

#[test]
fn one_invalid_file_makes_the_exit_status_1() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(
        plugins().join("activation/relu.rs"),
        dir.path().join("relu.rs"),
    )
    .expect("copy a plugin");
    std::fs::write(dir.path().join("nan.rs"), NAN_ACTIVATION).expect("write a hypothesis");
    let started = Instant::now();
    let out = validate(
        &["--json", dir.path().to_str().expect("a UTF-8 path")],
        cache.path(),
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert_eq!(
        code(&out),
        1,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_shape(line);
    }
    assert_eq!(line_for(&lines, "relu.rs")["valid"], true);
    let bad = line_for(&lines, "nan.rs");
    assert_eq!(bad["valid"], false, "{bad}");
    let error = bad["error"].as_object().expect("an error object");
    let keys: BTreeSet<&str> = error.keys().map(String::as_str).collect();
    assert_eq!(keys, ["class", "message"].into_iter().collect(), "{bad}");
    assert_eq!(error["class"], "invalid_behaviour", "{bad}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("forward_finite: ")),
        "{bad}"
    );
    assert_eq!(bad["name"], "nan");
    assert_eq!(bad["kind"], "activation");
}

#[test]
fn refusals_before_validation_are_reported_per_file() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        dir.path().join("policy.rs"),
        "const K: &str = env!(\"HOME\");\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("syntax.rs"), "fn broken( {}\n").expect("write");
    std::os::unix::fs::symlink(
        dir.path().join("missing-target"),
        dir.path().join("dangling.rs"),
    )
    .expect("symlink");
    let out = validate(
        &["--json", dir.path().to_str().expect("a UTF-8 path")],
        cache.path(),
    );
    assert_eq!(
        code(&out),
        1,
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (file, class) in [
        ("policy.rs", "policy"),
        ("syntax.rs", "compile"),
        ("dangling.rs", "io"),
    ] {
        let line = line_for(&lines, file);
        assert_shape(line);
        assert_eq!(line["valid"], false, "{line}");
        assert_eq!(line["error"]["class"], class, "{line}");
        assert!(
            line["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{line}"
        );
        assert_eq!(line["kind"], Value::Null, "{line}");
    }
    let syntax = line_for(&lines, "syntax.rs");
    assert!(
        syntax["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("hypothesis.rs:1")),
        "{syntax}"
    );
}

#[test]
fn kind_mismatch_is_reported() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let relu = plugins().join("activation/relu.rs");
    let out = validate(
        &[
            "--json",
            "--kind",
            "regularizer",
            relu.to_str().expect("a UTF-8 path"),
        ],
        cache.path(),
    );
    assert_eq!(code(&out), 1, "stderr:\n{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_shape(&lines[0]);
    assert_eq!(lines[0]["error"]["class"], "kind_mismatch", "{}", lines[0]);
}

#[test]
fn table_output_summarises_and_marks_cache_hits() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let relu = plugins().join("activation/relu.rs");
    let relu = relu.to_str().expect("a UTF-8 path");
    let first = validate(&[relu], cache.path());
    assert_eq!(code(&first), 0, "stderr:\n{}", stderr(&first));
    let text = stdout(&first);
    assert!(text.starts_with("valid "), "{text}");
    assert!(
        text.contains("relu") && text.contains("1 valid, 0 invalid, 1 files"),
        "{text}"
    );
    assert!(!text.contains("(cached)"), "{text}");
    let second = validate(&[relu], cache.path());
    assert_eq!(code(&second), 0);
    assert!(stdout(&second).contains("(cached)"), "{}", stdout(&second));
    // --no-cache neither reads nor writes the cache.
    let third = validate(&["--no-cache", relu], cache.path());
    assert_eq!(code(&third), 0);
    assert!(!stdout(&third).contains("(cached)"), "{}", stdout(&third));
}

#[test]
fn table_output_explains_failures() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("nan.rs");
    std::fs::write(&file, NAN_ACTIVATION).expect("write a hypothesis");
    let out = validate(&[file.to_str().expect("a UTF-8 path")], cache.path());
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(text.starts_with("INVALID "), "{text}");
    assert!(text.contains("[invalid_behaviour]"), "{text}");
    assert!(text.contains("check forward_finite failed"), "{text}");
    assert!(text.contains("0 valid, 1 invalid, 1 files"), "{text}");
}

/// A usage error: exit status 2 and an explanation on stderr.
fn expect_usage_error(out: &Output, needle: &str) {
    assert_eq!(
        code(out),
        2,
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    let err = stderr(out);
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(
        stdout(out).trim().is_empty(),
        "nothing on stdout: {}",
        stdout(out)
    );
}

#[test]
fn no_arguments_is_a_usage_error() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    expect_usage_error(&hypoforge(&[], cache.path()), "Usage");
}

#[test]
fn validate_without_files_is_a_usage_error() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    expect_usage_error(&validate(&[], cache.path()), "<FILE>");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    expect_usage_error(&hypoforge(&["evolve"], cache.path()), "evolve");
}

#[test]
fn unknown_kind_is_a_usage_error() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let relu = plugins().join("activation/relu.rs");
    let out = validate(
        &["--kind", "neuron", relu.to_str().expect("a UTF-8 path")],
        cache.path(),
    );
    expect_usage_error(&out, "neuron");
    assert!(
        stderr(&out).contains("activation, preprocessor or regularizer"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn nonexistent_path_is_a_usage_error() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let missing = cache.path().join("no-such-hypothesis.rs");
    let out = validate(&[missing.to_str().expect("a UTF-8 path")], cache.path());
    expect_usage_error(&out, "no-such-hypothesis.rs");
}

#[test]
fn directory_without_hypotheses_is_a_usage_error() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let empty = tempfile::tempdir().expect("a temporary directory");
    let out = validate(
        &[empty.path().to_str().expect("a UTF-8 path")],
        cache.path(),
    );
    expect_usage_error(&out, "no .rs files");
}

#[test]
fn non_positive_compile_timeout_is_a_usage_error() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let relu = plugins().join("activation/relu.rs");
    for timeout in ["0", "-1", "NaN", "inf"] {
        let flag = format!("--compile-timeout={timeout}");
        let out = validate(&[&flag, relu.to_str().expect("a UTF-8 path")], cache.path());
        expect_usage_error(&out, "compile-timeout");
    }
}

#[test]
fn help_explains_the_exit_codes() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let out = hypoforge(&["validate", "--help"], cache.path());
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    assert!(
        help.contains(
            "Exit status: 0 when every file is valid, 1 when any is invalid, 2 on a usage error"
        ),
        "{help}"
    );
    for option in [
        "--json",
        "--kind",
        "--cache-dir",
        "--no-cache",
        "--compile-timeout",
    ] {
        assert!(
            help.contains(option),
            "help should document {option}: {help}"
        );
    }
}

#[test]
fn top_level_help_lists_validate() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let out = hypoforge(&["--help"], cache.path());
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("validate"), "{}", stdout(&out));
}

/// The examples in `validate --help` are reflowed by clap into one line
/// ("Examples: hypoforge validate plugins/ hypoforge validate --kind ...").
#[test]
fn help_shows_each_example_on_its_own_line() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let help = stdout(&hypoforge(&["validate", "--help"], cache.path()));
    assert!(
        help.lines()
            .any(|l| l.trim() == "hypoforge validate plugins/"),
        "{help}"
    );
}

/// A two-task suite small enough for a test: seconds, not minutes.
const TINY_SUITE: &str = "name = \"tiny\"\n[defaults]\nhidden = [8]\nmin_steps = 10\n\
    [[task]]\nname = \"xor\"\ndataset = \"synthetic:xor\"\nsamples = 200\n\
    [[task]]\nname = \"iris\"\ndataset = \"iris\"\n";

/// `hypoforge evaluate --cache-dir <cache> --suite <tiny> <args...>`.
fn evaluate(args: &[&str], cache: &Path) -> Output {
    let suite = cache.join("tiny.toml");
    std::fs::write(&suite, TINY_SUITE).expect("write the suite");
    let cache_dir = cache.to_str().expect("a UTF-8 temporary path");
    let suite = suite.to_str().expect("a UTF-8 temporary path").to_owned();
    let mut all = vec!["evaluate", "--cache-dir", cache_dir, "--suite", &suite];
    all.extend_from_slice(args);
    hypoforge(&all, cache)
}

#[test]
fn evaluate_writes_the_documented_json_and_a_leaderboard() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let json = cache.path().join("out/results.json");
    let examples = root().join("examples/hypotheses/regularizer");
    let out = evaluate(
        &[
            "--kind",
            "regularizer",
            "--seeds",
            "2",
            "--json",
            json.to_str().expect("UTF-8"),
            examples.to_str().expect("UTF-8"),
        ],
        cache.path(),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("regularizer leaderboard") && table.contains("B-WR"),
        "{table}"
    );
    let v: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON file")).expect("JSON");
    assert_eq!(v["kind"], "regularizer");
    assert_eq!(v["suite"], "tiny");
    assert_eq!(v["trials"], 4);
    let results = v["results"].as_array().expect("results");
    // 5 baselines and the 2 shipped examples.
    assert_eq!(results.len(), 7);
    for r in results {
        for key in [
            "name",
            "hash",
            "baseline",
            "b_wr",
            "b_wr_ci",
            "bsota_wr",
            "bsota_wr_ci",
            "mean_val_loss",
            "mean_val_acc",
            "failed_trials",
            "per_task",
        ] {
            assert!(r.get(key).is_some(), "missing {key}: {r}");
        }
        let (b, s) = (
            r["b_wr"].as_f64().expect("b_wr"),
            r["bsota_wr"].as_f64().expect("bsota"),
        );
        assert!((0.0..=1.0).contains(&b) && s <= b, "{r}");
        assert_eq!(r["per_task"].as_array().expect("per_task").len(), 2);
    }
    let new: Vec<&str> = results
        .iter()
        .filter(|r| r["baseline"] == false)
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        BTreeSet::from_iter(new),
        BTreeSet::from(["l2_light", "log_cosh"])
    );
}

#[test]
fn evaluate_with_the_native_engine_gives_the_sandboxs_results_and_says_what_stayed_behind() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    // Consistent in itself (it validates), but twice as strong where a pointer is 8 bytes.
    let odd = cache.path().join("pointer_width.rs");
    std::fs::write(
        &odd,
        "use hypoforge_sdk::prelude::*;
fn scale() -> f32 { core::mem::size_of::<usize>() as f32 / 4.0 }
fn penalty(w: Matrix) -> f32 { 1e-4 * scale() * w.data().iter().map(|v| v * v).sum::<f32>() }
fn gradient(w: Matrix, g: &mut [f32]) {
    for (g, v) in g.iter_mut().zip(w.data()) { *g = 2e-4 * scale() * v; }
}
regularizer!(name = \"pointer_width\", penalty = penalty, gradient = gradient);
",
    )
    .expect("write");
    let examples = root().join("examples/hypotheses/regularizer");
    let run = |engine: &str| -> Value {
        let json = cache.path().join(format!("{engine}.json"));
        let out = evaluate(
            &[
                "--kind",
                "regularizer",
                "--seeds",
                "2",
                "--engine",
                engine,
                "--json",
                json.to_str().expect("UTF-8"),
                examples.to_str().expect("UTF-8"),
                odd.to_str().expect("UTF-8"),
            ],
            cache.path(),
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        if engine == "native" {
            let err = stderr(&out);
            assert!(
                err.contains("7 of 8 components passed the differential test"),
                "{err}"
            );
            assert!(
                stdout(&out).contains("note: native engine: pointer_width runs in the sandbox"),
                "{}",
                stdout(&out)
            );
        }
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON file")).expect("JSON")
    };
    let (wasm, native) = (run("wasm"), run("native"));
    assert_eq!(native["results"], wasm["results"]);
    let notes = native["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0]
            .as_str()
            .expect("a note")
            .contains("computes differently"),
        "{notes:?}"
    );

    let out = evaluate(&["--kind", "regularizer", "--engine", "jit"], cache.path());
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("wasm") && stderr(&out).contains("native"));
}

#[test]
fn evaluate_skips_rejected_hypotheses_and_exits_1() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let bad = cache.path().join("bad.rs");
    std::fs::write(&bad, "use hypoforge_sdk::prelude::*;\nfn f<R: Real>(x: R) -> R { x.exp() }\nactivation!(name = \"expo\", f = f);\n")
        .expect("write");
    let wrong_kind = plugins().join("regularizer/l2.rs");
    let out = evaluate(
        &[
            "--kind",
            "activation",
            "--seeds",
            "1",
            bad.to_str().expect("UTF-8"),
            wrong_kind.to_str().expect("UTF-8"),
        ],
        cache.path(),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("bad.rs") && err.contains("invalid_behaviour"),
        "{err}"
    );
    assert!(
        err.contains("l2.rs") && err.contains("kind_mismatch"),
        "{err}"
    );
    assert!(stdout(&out).contains("activation leaderboard"));
}

#[test]
fn evaluate_usage_errors_exit_2_and_say_what_to_fix() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let out = evaluate(&["--kind", "activation", "--seeds", "0"], cache.path());
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--seeds"), "{}", stderr(&out));
    let bad_suite = cache.path().join("typo.toml");
    std::fs::write(
        &bad_suite,
        "name = \"t\"\n[[task]]\nname = \"a\"\ndataset = \"iris\"\nepoch = 2\n",
    )
    .expect("write");
    let out = hypoforge(
        &[
            "evaluate",
            "--kind",
            "activation",
            "--suite",
            bad_suite.to_str().expect("UTF-8"),
        ],
        cache.path(),
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("epoch"), "{}", stderr(&out));
    let out = hypoforge(
        &["evaluate", "--kind", "activation", "--suite", "quik"],
        cache.path(),
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("quick"), "{}", stderr(&out));
    let out = hypoforge(&["evaluate"], cache.path());
    assert_eq!(code(&out), 2);
    for bad in ["-1", "NaN", "inf", "1e30"] {
        let out = evaluate(
            &["--kind", "activation", &format!("--trial-timeout={bad}")],
            cache.path(),
        );
        assert_eq!(code(&out), 2, "--trial-timeout={bad}");
        assert!(
            stderr(&out).contains("--trial-timeout must be a number of seconds"),
            "{}",
            stderr(&out)
        );
    }
}

#[path = "../../hypoforge-generate/tests/support/chat_server.rs"]
mod chat_server;

/// `hypoforge generate --cache-dir <cache> <args...>` with `env` set and no inherited LLM settings.
fn generate(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hypoforge"));
    command
        .arg("generate")
        .args([
            "--cache-dir",
            cache.to_str().expect("a UTF-8 temporary path"),
        ])
        .args(args)
        .env_remove("HYPOFORGE_CACHE_DIR")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env("XDG_CACHE_HOME", cache);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the hypoforge binary runs")
}

/// Every file under `dir`, by name, with its contents.
fn folder(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("the output folder exists")
        .map(|e| {
            let e = e.expect("a directory entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("readable"),
            )
        })
        .collect();
    files.sort();
    files
}

fn jsonl_file(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("hypotheses.jsonl exists")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn generate_with_the_grammar_is_deterministic_for_a_seed() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let out = tempfile::tempdir().expect("a temporary directory");
    let run = |dir: &str, seed: &str| {
        let path = out.path().join(dir);
        let args = [
            "--kind",
            "regularizer",
            "--generator",
            "grammar",
            "-n",
            "6",
            "--seed",
            seed,
            "--out",
            path.to_str().expect("UTF-8"),
        ];
        let result = generate(&args, cache.path(), &[]);
        assert_eq!(code(&result), 0, "{}", stderr(&result));
        assert!(
            stdout(&result).contains("6 regularizer hypotheses produced, 6 compiled"),
            "{}",
            stdout(&result)
        );
        folder(&path)
    };
    let a = run("a", "11");
    assert_eq!(a, run("b", "11"), "same seed, same files byte for byte");
    assert_ne!(a, run("c", "12"));
    assert_eq!(a.len(), 7, "six sources and hypotheses.jsonl");
    let lines = jsonl_file(&out.path().join("a/hypotheses.jsonl"));
    assert_eq!(lines.len(), 6);
    for line in &lines {
        assert_eq!(line["generator"], "grammar");
        assert_eq!(line["kind"], "regularizer");
        let file = line["file"].as_str().expect("file");
        let source = std::fs::read(out.path().join("a").join(file)).expect("the file exists");
        assert_eq!(line["hash"], sha256_hex(&source));
        assert_eq!(
            line["source"].as_str().map(str::as_bytes),
            Some(&source[..])
        );
    }
}

#[test]
fn generate_replays_the_builtin_corpus_and_its_own_output_deterministically() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let out = tempfile::tempdir().expect("a temporary directory");
    let path = |d: &str| out.path().join(d).to_str().expect("UTF-8").to_owned();
    let replay = |generator: &str, dir: &str, seed: &str| {
        let args = [
            "--kind",
            "activation",
            "--strategy",
            "nep",
            "--generator",
            generator,
            "-n",
            "4",
            "--seed",
            seed,
            "--out",
            &path(dir),
        ];
        let result = generate(&args, cache.path(), &[]);
        assert_eq!(code(&result), 0, "{}", stderr(&result));
        folder(&out.path().join(dir))
    };
    let a = replay("replay", "a", "5");
    assert_eq!(a, replay("replay", "b", "5"));
    assert_ne!(a, replay("replay", "c", "6"));
    for line in jsonl_file(&out.path().join("a/hypotheses.jsonl")) {
        assert_eq!(line["strategy"], "nep");
        assert_eq!(line["prompt_id"], "activation-nep/1");
        assert!(line["model"].is_string() && line["idea"].is_string());
        assert!(!line["attempts"].as_array().expect("attempts").is_empty());
    }

    // What generate writes is a corpus: replaying it (seed 0 reorders) yields the same sources.
    let again = replay(&format!("replay:{}/hypotheses.jsonl", path("a")), "d", "0");
    let sources = |files: &[(String, Vec<u8>)]| {
        let mut s: Vec<Vec<u8>> = files
            .iter()
            .filter(|(n, _)| n.ends_with(".rs"))
            .map(|(_, b)| b.clone())
            .collect();
        s.sort();
        s
    };
    assert_eq!(sources(&a), sources(&again));
}

#[test]
fn generate_refuses_bad_requests_and_never_overwrites_a_generation() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let out = tempfile::tempdir().expect("a temporary directory");
    let dir = out.path().to_str().expect("UTF-8");
    let no_strategy = generate(
        &[
            "--kind",
            "activation",
            "--generator",
            "openai:m",
            "--out",
            dir,
        ],
        cache.path(),
        &[],
    );
    expect_usage_error(&no_strategy, "needs --strategy iep or --strategy nep");
    let bad = generate(
        &["--kind", "activation", "--generator", "llama", "--out", dir],
        cache.path(),
        &[],
    );
    expect_usage_error(&bad, "use openai:MODEL, grammar, replay or replay:FILE");
    let missing = generate(
        &[
            "--kind",
            "activation",
            "--generator",
            "replay:/nonexistent/c.jsonl",
            "--out",
            dir,
        ],
        cache.path(),
        &[],
    );
    expect_usage_error(
        &missing,
        "cannot read the replay corpus /nonexistent/c.jsonl",
    );

    std::fs::write(out.path().join("hypotheses.jsonl"), "precious\n").expect("writable");
    let again = generate(
        &[
            "--kind",
            "activation",
            "--generator",
            "grammar",
            "--out",
            dir,
        ],
        cache.path(),
        &[],
    );
    expect_usage_error(&again, "already holds a generation");
    assert_eq!(
        std::fs::read_to_string(out.path().join("hypotheses.jsonl")).expect("still there"),
        "precious\n"
    );
}

#[test]
fn generate_with_an_llm_repairs_records_usage_and_never_writes_the_key() {
    const KEY: &str = "sk-cli-test-0a1b2c3d4e5f";
    let fixed = "// Softsign gate.\nuse hypoforge_sdk::prelude::*;\n\nfn soft_gate<R: Real>(x: R) -> R {\n    x * (x / (x.abs() + 1.0) + 1.0) * 0.5\n}\n\nactivation!(name = \"soft_gate\", f = soft_gate);\n";
    let broken = fixed.replace("(x.abs() + 1.0)", "(1.0 + x.abs())");
    let server = chat_server::Server::start(move |_, seen| {
        let messages = seen.body["messages"].as_array().expect("messages").len();
        // A first request gets the broken file; a repair request gets the fix.
        if messages == 2 {
            chat_server::ok(&format!("A softsign gate.\n```rust\n{broken}```"))
        } else {
            chat_server::ok(&format!("Fixed.\n```rust\n{fixed}```"))
        }
    });
    let cache = tempfile::tempdir().expect("a temporary directory");
    let out = tempfile::tempdir().expect("a temporary directory");
    let dir = out.path().join("llm");
    let result = generate(
        &[
            "--kind",
            "activation",
            "--strategy",
            "nep",
            "--generator",
            "openai:test-model",
            "-n",
            "2",
            "--out",
            dir.to_str().expect("UTF-8"),
        ],
        cache.path(),
        &[
            ("OPENAI_API_KEY", KEY),
            ("OPENAI_BASE_URL", &server.base_url),
        ],
    );
    assert_eq!(code(&result), 0, "{}", stderr(&result));
    let text = stdout(&result);
    assert!(
        text.contains("2 activation hypotheses produced, 2 compiled, 2 valid"),
        "{text}"
    );
    assert!(
        text.contains("LLM use: 4 requests, 480 prompt + 320 completion tokens"),
        "{text}"
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(&*format!("Bearer {KEY}")))
    );
    let repair = seen[1].body["messages"][3]["content"]
        .as_str()
        .expect("a repair message");
    assert!(repair.contains("cannot add `R` to `{float}`"), "{repair}");

    let lines = jsonl_file(&dir.join("hypotheses.jsonl"));
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["generator"], "openai:test-model");
        assert_eq!(line["endpoint"], server.base_url.as_str());
        assert_eq!(line["prompt_id"], "activation-nep/1");
        assert_eq!(line["idea"], "A softsign gate.");
        assert_eq!(line["valid"], true);
        let outcomes: Vec<&str> = line["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| a["outcome"].as_str().expect("an outcome"))
            .collect();
        assert_eq!(outcomes, ["compile_error", "valid"]);
        assert_eq!(line["usage"]["requests"], 2);
    }
    for (name, bytes) in folder(&dir) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "the key leaked into {name}"
        );
    }
    assert!(!stdout(&result).contains(KEY) && !stderr(&result).contains(KEY));
}

#[test]
fn generate_with_an_endpoint_that_always_fails_says_so_and_leaves_nothing_behind() {
    let server = chat_server::Server::start(|_, _| chat_server::status(500, "down"));
    let cache = tempfile::tempdir().expect("a temporary directory");
    let out = tempfile::tempdir().expect("a temporary directory");
    let dir = out.path().join("llm");
    let args = [
        "--kind",
        "activation",
        "--strategy",
        "iep",
        "--generator",
        "openai:m",
        "--retries",
        "1",
        "--out",
        dir.to_str().expect("UTF-8"),
    ];
    let result = generate(
        &args,
        cache.path(),
        &[("OPENAI_BASE_URL", &server.base_url)],
    );
    assert_eq!(code(&result), 2, "{}", stderr(&result));
    assert!(
        stderr(&result)
            .contains("failed 2 times in a row; giving up. Last failure: HTTP 500: down"),
        "{}",
        stderr(&result)
    );
    assert!(
        !dir.join("hypotheses.jsonl").exists(),
        "a retry is not blocked"
    );
    assert_eq!(server.seen().len(), 2);
}

// ---- hypoforge run / resume / status / export / report ----

/// A run small enough for a test: two kinds, two rounds of three replayed hypotheses, the tiny
/// suite for the one-pass stage and, twice as long, for the full evaluation of the top two.
fn run_config(dir: &Path) -> PathBuf {
    let suite = dir.join("tiny.toml");
    std::fs::write(&suite, TINY_SUITE).expect("write the suite");
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 3\nkinds = [\"activation\", \"regularizer\"]\nrounds = 2\nper_round = 3\n\
             suite = {suite:?}\nseeds = 1\n[full]\ntop_k = 2\nsuite = {suite:?}\nepochs = 2\nseeds = 1\n",
            suite = suite.to_str().expect("UTF-8")
        ),
    )
    .expect("write the config");
    config
}

fn run_command(args: &[&str], store: &Path, cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hypoforge"));
    command
        .args(args)
        .args(["--store", store.to_str().expect("UTF-8")])
        .env_remove("HYPOFORGE_CACHE_DIR")
        .env("XDG_CACHE_HOME", cache);
    command
}

/// `hypoforge run --config <config> --store <store> <extra...>`, to the end.
fn start_run(config: &Path, store: &Path, cache: &Path, extra: &[&str]) -> Output {
    run_command(
        &["run", "--config", config.to_str().expect("UTF-8")],
        store,
        cache,
    )
    .args(extra)
    .output()
    .expect("runs")
}

fn export_of(store: &Path, cache: &Path) -> String {
    let out = run_command(&["export", "1", "--json"], store, cache)
        .output()
        .expect("runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    stdout(&out)
}

/// Start (or, once the run exists, resume) run 1 and kill it with SIGKILL after `delay`;
/// returns whether it finished on its own first.
fn run_until_killed(config: &Path, store: &Path, cache: &Path, delay: Duration) -> bool {
    let exists = store.exists()
        && run_command(&["status", "--json"], store, cache)
            .output()
            .is_ok_and(|o| stdout(&o).contains("\"id\": 1"));
    let mut command = if exists {
        run_command(&["resume", "1", "--quiet"], store, cache)
    } else {
        run_command(
            &[
                "run",
                "--quiet",
                "--config",
                config.to_str().expect("UTF-8"),
            ],
            store,
            cache,
        )
    };
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let started = Instant::now();
    while started.elapsed() < delay {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .expect("piped")
                .read_to_string(&mut err)
                .expect("read");
            assert!(status.success(), "{status}: {err}");
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    false
}

#[test]
fn a_run_killed_at_random_points_and_resumed_ends_exactly_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let config = run_config(dir.path());

    // Twice: the first fills the compile cache (which the interrupted run shares), the second
    // times a run as the interrupted one will go; both must agree.
    let mut exports = Vec::new();
    let mut took = Duration::ZERO;
    for name in ["cold.db", "reference.db"] {
        let store = dir.path().join(name);
        let started = Instant::now();
        let out = start_run(&config, &store, &cache, &["--quiet"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        took = started.elapsed();
        exports.push(export_of(&store, &cache));
    }
    assert_eq!(exports[0], exports[1], "the same seed gives the same run");
    let expected = exports.pop().expect("two runs");
    let v: Value = serde_json::from_str(&expected).expect("JSON");
    assert_eq!(v["state"], "done");
    assert_eq!(v["hypotheses"].as_array().map(Vec::len), Some(12));
    for kind in ["activation", "regularizer"] {
        assert!(v["kinds"][kind]["one_pass"]["results"].is_array(), "{v}");
        assert!(v["kinds"][kind]["full"]["results"].is_array(), "{v}");
    }

    // Kill points spread over the whole run, from a fixed seed so that a failure reproduces.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interrupted = dir.path().join("interrupted.db");
    let mut kills = 0;
    loop {
        let fraction = (next() % 1000) as f64 / 1000.0;
        let delay = if kills < 6 {
            took.mul_f64(0.05 + 0.5 * fraction)
        } else {
            took * 10
        };
        if run_until_killed(&config, &interrupted, &cache, delay) {
            break;
        }
        kills += 1;
    }
    assert!(kills >= 1, "the run was never interrupted");
    assert_eq!(export_of(&interrupted, &cache), expected);
}

#[test]
fn the_device_key_chooses_where_trials_train() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let config = run_config(dir.path());
    let base = format!(
        "{}[budget]\nmax_hypotheses = 2\n",
        std::fs::read_to_string(&config).expect("read")
    );

    std::fs::write(&config, format!("device = \"cuda\"\n{base}")).expect("write");
    let store = dir.path().join("cuda.db");
    let out = start_run(&config, &store, &cache, &[]);
    if code(&out) == 0 {
        eprintln!("a GPU is here: the refusal without one is not exercised");
        return;
    }
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("device = \"cuda\": "), "{err}");
    assert!(err.contains("set device = \"cpu\" or \"auto\""), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !store.exists(),
        "a run that cannot start must not create a store"
    );

    // Without a GPU, auto says why and trains exactly as the CPU path does.
    std::fs::write(&config, format!("device = \"auto\"\n{base}")).expect("write");
    let auto = dir.path().join("auto.db");
    let out = start_run(&config, &auto, &cache, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no GPU, evaluating on the CPU: "),
        "{}",
        stderr(&out)
    );
    std::fs::write(&config, &base).expect("write");
    let cpu = dir.path().join("cpu.db");
    assert_eq!(code(&start_run(&config, &cpu, &cache, &["--quiet"])), 0);
    let kinds = |store: &Path| -> Value {
        serde_json::from_str::<Value>(&export_of(store, &cache)).expect("JSON")["kinds"].clone()
    };
    assert_eq!(kinds(&auto), kinds(&cpu));
}

#[test]
fn a_malformed_config_names_the_bad_key_and_touches_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("run.toml");
    let store = dir.path().join("s.db");
    for (text, needle) in [
        ("rounds = 1\n[full]\ntopk = 3\n", "`topk`"),
        ("per_rund = 4\n", "`per_rund`"),
        ("seeds = 0\n", "`seeds`"),
        ("[generator]\nsource = \"chatgpt\"\n", "`generator.source`"),
    ] {
        std::fs::write(&config, text).expect("write");
        let out = start_run(&config, &store, dir.path(), &[]);
        assert_eq!(code(&out), 2, "{text}");
        assert!(stderr(&out).contains(needle), "{text}: {}", stderr(&out));
        assert!(!store.exists(), "a bad config must not create a store");
    }
}

#[test]
fn a_store_that_cannot_be_written_fails_clearly_and_resumes_to_the_same_results() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let config = run_config(dir.path());

    let out = start_run(
        &config,
        &dir.path().join("missing/s.db"),
        &cache,
        &["--quiet"],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    // A place no one may write, root included (procfs refuses new files).
    let out = start_run(
        &config,
        Path::new("/proc/hypoforge.db"),
        &cache,
        &["--quiet"],
    );
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("/proc/hypoforge.db"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let reference = dir.path().join("reference.db");
    let out = start_run(&config, &reference, &cache, &["--quiet"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A full disk, as the process sees one: a file size limit the store outgrows mid-run.
    let store = dir.path().join("full.db");
    let mut command = run_command(
        &[
            "run",
            "--quiet",
            "--config",
            config.to_str().expect("UTF-8"),
        ],
        &store,
        &cache,
    );
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 96 * 1024,
                rlim_max: 96 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().expect("runs");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot be written"), "{err}");
    assert!(err.contains("resume"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Nothing half-written: the run resumes from what was committed to the very same end.
    let out = run_command(&["resume", "1", "--quiet"], &store, &cache)
        .output()
        .expect("runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(export_of(&store, &cache), export_of(&reference, &cache));
}

#[test]
fn status_report_and_a_second_writer() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let config = run_config(dir.path());
    let store = dir.path().join("s.db");
    let out = start_run(&config, &store, &cache, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("run 1 is done"), "{}", stdout(&out));
    assert!(stderr(&out).contains("run plan:"), "{}", stderr(&out));

    let out = run_command(&["status"], &store, &cache)
        .output()
        .expect("runs");
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("run 1"), "{}", stdout(&out));
    assert!(stdout(&out).contains("done"), "{}", stdout(&out));

    let out = run_command(&["resume", "1"], &store, &cache)
        .output()
        .expect("runs");
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("run 1 is finished"),
        "{}",
        stderr(&out)
    );
    let out = run_command(&["export", "7"], &store, &cache)
        .output()
        .expect("runs");
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no run 7"), "{}", stderr(&out));

    let report = dir.path().join("report");
    let out = run_command(
        &["report", "1", "-o", report.to_str().expect("UTF-8")],
        &store,
        &cache,
    )
    .output()
    .expect("runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let index = std::fs::read_to_string(report.join("index.html")).expect("index.html");
    assert!(
        index.contains("Kendall"),
        "the full evaluation's τ is reported"
    );
    let pages = std::fs::read_dir(report.join("h")).expect("pages").count();
    assert!(pages >= 12, "a page per hypothesis and baseline: {pages}");

    // While one process holds the store for writing, a second is refused, not let in.
    let holder = hypoforge_store_lock(&store);
    let out = run_command(&["resume", "1"], &store, &cache)
        .output()
        .expect("runs");
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("being written by another hypoforge process"),
        "{}",
        stderr(&out)
    );
    drop(holder);
}

/// Hold the store's writer lock as a running `hypoforge` would.
fn hypoforge_store_lock(store: &Path) -> std::fs::File {
    let mut path = store.as_os_str().to_owned();
    path.push(".lock");
    let file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("lock file");
    file.try_lock().expect("free");
    file
}

#[test]
fn budgets_stop_generation_or_the_run_and_say_how_to_go_on() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let config = run_config(dir.path());
    let base = std::fs::read_to_string(&config).expect("read");

    std::fs::write(&config, format!("{base}[budget]\nmax_hypotheses = 2\n")).expect("write");
    let store = dir.path().join("capped.db");
    let out = start_run(&config, &store, &cache, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("budget.max_hypotheses (2) reached"),
        "{}",
        stderr(&out)
    );
    let export: Value = serde_json::from_str(&export_of(&store, &cache)).expect("JSON");
    assert_eq!(export["hypotheses"].as_array().map(Vec::len), Some(2));
    assert_eq!(export["state"], "done");

    std::fs::write(
        &config,
        format!("{base}[budget]\nmax_wall_seconds = 0.01\n"),
    )
    .expect("write");
    let store = dir.path().join("timed.db");
    let out = start_run(&config, &store, &cache, &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("wall-clock budget"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("hypoforge resume 1"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_relative_cache_dir_works_from_any_folder() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let relu = plugins().join("activation/relu.rs");
    let out = Command::new(env!("CARGO_BIN_EXE_hypoforge"))
        .current_dir(dir.path())
        .args(["validate", "--cache-dir", "rel-cache"])
        .arg(&relu)
        .env_remove("HYPOFORGE_CACHE_DIR")
        .output()
        .expect("runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(dir.path().join("rel-cache/modules").is_dir());
}

#[test]
fn a_run_with_an_unreachable_llm_stops_at_the_preflight_and_leaves_no_store() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "kinds = [\"activation\"]\n[generator]\nsource = \"openai:test-model\"\n\
             base_url = \"http://127.0.0.1:{port}/v1\"\n"
        ),
    )
    .expect("write");
    let store = dir.path().join("s.db");
    let out = start_run(&config, &store, &dir.path().join("cache"), &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the LLM endpoint"),
        "{}",
        stderr(&out)
    );
    assert!(
        !store.exists(),
        "nothing is stored before the preflight passes"
    );
}

// ---- hypoforge keygen / bundle ----

#[test]
fn a_run_packs_into_a_signed_bundle_that_verifies_installs_and_reproduces() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let config = run_config(dir.path());
    let store = dir.path().join("s.db");
    let out = start_run(&config, &store, &cache, &["--quiet"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let path = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_owned();
    for name in ["me.key", "other.key"] {
        let out = hypoforge(&["keygen", "-o", &path(name)], &cache);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let out = hypoforge(&["keygen", "-o", &path("me.key")], &cache);
    assert_eq!(code(&out), 2, "an existing key is never overwritten");

    let bundle = path("found.hfb");
    let out = hypoforge(
        &[
            "bundle",
            "pack",
            "--run",
            "1",
            "--top",
            "1",
            "--sign",
            &path("me.key"),
            "-o",
            &bundle,
            "--store",
            &path("s.db"),
        ],
        &cache,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("packed 2 components"),
        "{}",
        stdout(&out)
    );

    let verify = |key: &str| {
        hypoforge(
            &[
                "bundle",
                "verify",
                &bundle,
                "--require-signature",
                "--trusted-key",
                &path(key),
            ],
            &cache,
        )
    };
    let out = verify("me.key.pub");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("signed by"), "{}", stdout(&out));
    assert!(stdout(&out).contains("B-WR"), "recorded results are listed");
    let out = verify("other.key.pub");
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("trusted"), "{}", stderr(&out));

    let mut bytes = std::fs::read(&bundle).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let damaged = path("damaged.hfb");
    std::fs::write(&damaged, bytes).expect("write");
    let out = hypoforge(&["bundle", "verify", &damaged], &cache);
    assert_eq!(code(&out), 2);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    let installed = dir.path().join("inst");
    let out = hypoforge(
        &[
            "bundle",
            "install",
            &bundle,
            "--into",
            installed.to_str().expect("UTF-8"),
        ],
        &cache,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("recompiled and validated here"),
        "{}",
        stdout(&out)
    );
    for kind in ["activation", "regularizer"] {
        let files = std::fs::read_dir(installed.join(kind))
            .expect("a folder per kind")
            .count();
        assert_eq!(files, 1, "{kind}");
    }

    let out = hypoforge(&["bundle", "reproduce", &bundle], &cache);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out).matches(": reproduced").count(),
        2,
        "{}",
        stdout(&out)
    );
}

#[test]
fn files_pack_unsigned_and_a_signature_can_be_required() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let bundle = dir.path().join("b.hfb");
    let bundle = bundle.to_str().expect("UTF-8");
    let relu = plugins().join("activation/relu.rs");
    let l2 = plugins().join("regularizer/l2.rs");
    let out = hypoforge(
        &[
            "bundle",
            "pack",
            relu.to_str().expect("UTF-8"),
            l2.to_str().expect("UTF-8"),
            "-o",
            bundle,
        ],
        &cache,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = hypoforge(&["bundle", "verify", bundle], &cache);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("unsigned"), "{}", stdout(&out));
    assert!(stdout(&out).contains("relu"), "{}", stdout(&out));

    let key = dir.path().join("k");
    let out = hypoforge(&["keygen", "-o", key.to_str().expect("UTF-8")], &cache);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let public = format!("{}.pub", key.display());
    let out = hypoforge(
        &[
            "bundle",
            "verify",
            bundle,
            "--require-signature",
            "--trusted-key",
            &public,
        ],
        &cache,
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("signed") || stderr(&out).contains("signature"),
        "{}",
        stderr(&out)
    );

    // Files that do not validate are not packed, and nothing is written.
    let bad = dir.path().join("bad.rs");
    std::fs::write(&bad, "fn broken( {}\n").expect("write");
    let other = dir.path().join("other.hfb");
    let out = hypoforge(
        &[
            "bundle",
            "pack",
            bad.to_str().expect("UTF-8"),
            "-o",
            other.to_str().expect("UTF-8"),
        ],
        &cache,
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("does not compile"),
        "{}",
        stderr(&out)
    );
    assert!(!other.exists());
}

// ---- hypoforge reward train / efficiency and hypoforge rank ----

/// A real run of fourteen replayed activations on the quick suite (one seed), exported, is
/// what the reward commands learn from; then ranking, the analyses and the errors a user meets.
#[test]
fn the_reward_model_trains_on_a_run_export_ranks_and_analyses() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cache = dir.path().join("cache");
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        "seed = 0\nkinds = [\"activation\"]\nrounds = 1\nper_round = 14\nsuite = \"quick\"\n\
         seeds = 1\n[full]\ntop_k = 0\n",
    )
    .expect("write the config");
    let store = dir.path().join("store.db");
    let out = start_run(&config, &store, &cache, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let export = dir.path().join("run.json");
    std::fs::write(&export, export_of(&store, &cache)).expect("write the export");
    let export = export.to_str().expect("UTF-8");

    let model = dir.path().join("model.json");
    let model_path = model.to_str().expect("UTF-8");
    let out = hypoforge(&["reward", "train", export, "-o", model_path], &cache);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("| activation |"), "{}", stdout(&out));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("the model is written"))
            .expect("the model is JSON");
    assert_eq!(saved["models"][0]["kind"], "activation");
    assert!(saved["models"][0]["trained_on"].as_u64().expect("a count") >= 10);

    // A copy of GELU under another name is ranked, and flagged as a rediscovery of GELU.
    let copy = dir.path().join("my_gate.rs");
    std::fs::write(
        &copy,
        "use hypoforge_sdk::prelude::*;\n\
         fn gate<R: Real>(z: R) -> R { let p = normal_cdf(z); z * p }\n\
         activation!(name = \"my_gate\", f = gate);\n",
    )
    .expect("write the copy");
    let relu = plugins().join("activation/relu.rs");
    let out = hypoforge(
        &[
            "rank",
            "--model",
            model_path,
            "--json",
            copy.to_str().expect("UTF-8"),
            relu.to_str().expect("UTF-8"),
        ],
        &cache,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ranked: Value = serde_json::from_str(&stdout(&out)).expect("rank --json is JSON");
    let ranked = ranked.as_array().expect("an array");
    assert_eq!(ranked.len(), 2);
    assert!(ranked[0]["predicted_b_wr"].as_f64() >= ranked[1]["predicted_b_wr"].as_f64());
    let gate = ranked
        .iter()
        .find(|r| r["name"] == "my_gate")
        .expect("ranked");
    assert_eq!(gate["nearest"], "gelu");
    assert_eq!(gate["rediscovery"], true);
    assert_eq!(gate["n_score"], 0.0);
    let relu_row = ranked.iter().find(|r| r["name"] == "relu").expect("ranked");
    assert_eq!(relu_row["nearest"], "relu");
    let table = hypoforge(
        &["rank", "--model", model_path, copy.to_str().expect("UTF-8")],
        &cache,
    );
    assert!(
        stdout(&table).contains("≈ gelu (rediscovery)"),
        "{}",
        stdout(&table)
    );

    let analysis = dir.path().join("analysis");
    let out = hypoforge(
        &[
            "reward",
            "efficiency",
            export,
            "--out",
            analysis.to_str().expect("UTF-8"),
            "--resamples",
            "50",
        ],
        &cache,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let summary = std::fs::read_to_string(analysis.join("summary.md")).expect("a summary");
    assert!(summary.contains("in-source (nested 5-fold)"), "{summary}");
    let page = std::fs::read_to_string(analysis.join("index.html")).expect("a page");
    assert!(
        page.contains("<td>in-source (nested 5-fold)</td>"),
        "{page}"
    );
    assert!(
        page.contains("<img src=\"efficiency-activation.svg\""),
        "{page}"
    );
    assert!(page.contains("Content-Security-Policy"), "{page}");
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(analysis.join("analysis.json")).expect("the analysis"),
    )
    .expect("JSON");
    let auc = document["kinds"][0]["in_source"]["model"]["auc"]
        .as_f64()
        .expect("an AUC");
    assert!((0.0..=1.0).contains(&auc));
    for figure in [
        "win-rates-activation",
        "efficiency-activation",
        "top-activations",
        "similarity-activations",
    ] {
        for ext in ["svg", "png"] {
            let path = analysis.join(format!("{figure}.{ext}"));
            assert!(path.exists(), "{} is missing", path.display());
        }
    }

    // A run with the model evaluates only the best predicted half of each round.
    let ranked_config = dir.path().join("ranked.toml");
    std::fs::write(
        &ranked_config,
        format!(
            "seed = 5\nkinds = [\"activation\"]\nrounds = 1\nper_round = 6\nsuite = \"quick\"\n\
             seeds = 1\n[full]\ntop_k = 0\n[reward]\nmodel = {model_path:?}\nevaluate_share = 0.5\n"
        ),
    )
    .expect("write the config");
    let ranked_store = dir.path().join("ranked.db");
    let out = start_run(&ranked_config, &ranked_store, &cache, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = format!("{}{}", stdout(&out), stderr(&out));
    assert!(log.contains("the reward model picks 3 of 6"), "{log}");
    let ranked: Value = serde_json::from_str(&export_of(&ranked_store, &cache)).expect("JSON");
    let valid: Vec<&Value> = ranked["hypotheses"]
        .as_array()
        .expect("hypotheses")
        .iter()
        .filter(|h| h["verdict"] == "valid")
        .collect();
    assert_eq!(valid.len(), 6, "{ranked}");
    let predicted = |h: &Value| {
        h["reward"]["predicted_b_wr"]
            .as_f64()
            .expect("a prediction")
    };
    let (picked, left): (Vec<&Value>, Vec<&Value>) =
        valid.iter().partition(|h| h["reward"]["evaluated"] == true);
    assert_eq!((picked.len(), left.len()), (3, 3));
    let lowest_picked = picked
        .iter()
        .map(|h| predicted(h))
        .fold(f64::INFINITY, f64::min);
    assert!(left.iter().all(|h| predicted(h) <= lowest_picked));
    let board: Vec<&str> = ranked["kinds"]["activation"]["one_pass"]["results"]
        .as_array()
        .expect("a leaderboard")
        .iter()
        .filter(|r| r["baseline"] == false)
        .map(|r| r["hash"].as_str().expect("a hash"))
        .collect();
    let mut expected: Vec<&str> = picked
        .iter()
        .map(|h| h["hash"].as_str().expect("a hash"))
        .collect();
    let mut board_sorted = board.clone();
    board_sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        board_sorted, expected,
        "only the picked hypotheses are evaluated"
    );
    let missing = dir.path().join("missing.toml");
    std::fs::write(&missing, "[reward]\nmodel = \"/nonexistent/reward.json\"\n").expect("write");
    let never = dir.path().join("never.db");
    let out = start_run(&missing, &never, &cache, &[]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("reward.model: cannot read"),
        "{}",
        stderr(&out)
    );
    assert!(!never.exists(), "a bad model file leaves no store");

    // An export with too few evaluated hypotheses of a kind says so, and trains nothing.
    let mut small: Value =
        serde_json::from_str(&std::fs::read_to_string(export).expect("the export")).expect("JSON");
    let results = small["kinds"]["activation"]["one_pass"]["results"]
        .as_array_mut()
        .expect("results");
    let mut kept_new = 0;
    results.retain(|r| {
        let new = r["baseline"] == false;
        kept_new += usize::from(new);
        !new || kept_new <= 5
    });
    let small_path = dir.path().join("small.json");
    std::fs::write(&small_path, small.to_string()).expect("write");
    let out = hypoforge(
        &[
            "reward",
            "train",
            small_path.to_str().expect("UTF-8"),
            "-o",
            "unused.json",
        ],
        &cache,
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("5 evaluated activation hypotheses are too few"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("no kind has enough"),
        "{}",
        stderr(&out)
    );

    // What a user gets wrong: a model where a run export belongs, and the other way round.
    let out = hypoforge(
        &["rank", "--model", export, relu.to_str().expect("UTF-8")],
        &cache,
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not a reward model file"),
        "{}",
        stderr(&out)
    );
    let out = hypoforge(
        &["reward", "train", model_path, "-o", "unused.json"],
        &cache,
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is not a run export"),
        "{}",
        stderr(&out)
    );
}

/// One replayed corpus line.
fn corpus_line(kind: &str, name: &str, source: &str) -> String {
    serde_json::json!({
        "kind": kind, "generator": "test", "strategy": "iep", "name": name, "source": source,
    })
    .to_string()
}

/// A run checks every kind's behaviour on the reward crate's probes: a regularizer that computes
/// what L2 does is a duplicate though its source differs, and an activation within a hair of
/// GELU is kept but flagged as a rediscovery, in the log, the export and the report.
#[test]
fn a_run_finds_behavioural_duplicates_of_every_kind_and_flags_rediscoveries() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cache = dir.path().join("cache");
    let near_gelu = "use hypoforge_sdk::prelude::*;\n\
        fn near_gelu<R: Real>(x: R) -> R { x * normal_cdf(x) * 1.001 }\n\
        activation!(name = \"near_gelu\", f = near_gelu);\n";
    let wavy = "use hypoforge_sdk::prelude::*;\n\
        fn wavy<R: Real>(x: R) -> R { x + sin(x) * 0.5 }\n\
        activation!(name = \"wavy\", f = wavy);\n";
    let l2_again = "use hypoforge_sdk::prelude::*;\n\
        const STRENGTH: f64 = 0.0001;\n\
        fn p(weights: Matrix<'_>) -> f32 {\n\
            let total: f64 = weights.data().iter().map(|&x| f64::from(x) * f64::from(x)).sum();\n\
            (STRENGTH * total) as f32\n\
        }\n\
        fn g(weights: Matrix<'_>, grad: &mut [f32]) {\n\
            for (slot, &x) in grad.iter_mut().zip(weights.data()) { *slot = (2.0 * STRENGTH * f64::from(x)) as f32; }\n\
        }\n\
        regularizer!(name = \"l2_again\", penalty = p, gradient = g);\n";
    let cubic = "use hypoforge_sdk::prelude::*;\n\
        fn p(w: Matrix<'_>) -> f32 { (1e-4 * w.data().iter().map(|&x| { let a = f64::from(x).abs(); a * a * a }).sum::<f64>()) as f32 }\n\
        fn g(w: Matrix<'_>, out: &mut [f32]) {\n\
            for (o, &x) in out.iter_mut().zip(w.data()) { let x = f64::from(x); *o = (3e-4 * x * x.abs()) as f32; }\n\
        }\n\
        regularizer!(name = \"cubic\", penalty = p, gradient = g);\n";
    let corpus = dir.path().join("corpus.jsonl");
    std::fs::write(
        &corpus,
        [
            corpus_line("activation", "near_gelu", near_gelu),
            corpus_line("activation", "wavy", wavy),
            corpus_line("regularizer", "l2_again", l2_again),
            corpus_line("regularizer", "cubic", cubic),
        ]
        .join("\n"),
    )
    .expect("write the corpus");
    let suite = dir.path().join("tiny.toml");
    std::fs::write(&suite, TINY_SUITE).expect("write the suite");
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "kinds = [\"activation\", \"regularizer\"]\nrounds = 1\nper_round = 2\nsuite = {:?}\n\
             seeds = 1\n[generator]\nsource = \"replay:{}\"\nstrategies = [\"iep\"]\n[full]\ntop_k = 0\n",
            suite.to_str().expect("UTF-8"),
            corpus.to_str().expect("UTF-8")
        ),
    )
    .expect("write the config");
    let store = dir.path().join("store.db");
    let out = start_run(&config, &store, &cache, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = format!("{}{}", stdout(&out), stderr(&out));
    assert!(log.contains("near_gelu ≈ gelu"), "{log}");

    let export: Value = serde_json::from_str(&export_of(&store, &cache)).expect("JSON");
    let hypothesis = |name: &str| -> Value {
        export["hypotheses"]
            .as_array()
            .expect("hypotheses")
            .iter()
            .find(|h| h["name"] == name)
            .unwrap_or_else(|| panic!("{name} is in the export"))
            .clone()
    };
    let copy = hypothesis("l2_again");
    assert_eq!(copy["verdict"], "duplicate", "{copy}");
    assert!(
        copy["detail"]
            .as_str()
            .expect("a detail")
            .contains("computes what l2 does on every probe"),
        "{copy}"
    );
    let cubic = hypothesis("cubic");
    assert_eq!(cubic["verdict"], "valid", "{cubic}");
    assert_eq!(cubic["novelty"]["rediscovery"], false, "{cubic}");
    let near = hypothesis("near_gelu");
    assert_eq!(near["verdict"], "valid", "{near}");
    assert_eq!(near["novelty"]["nearest"], "gelu", "{near}");
    assert_eq!(near["novelty"]["rediscovery"], true, "{near}");
    let wavy = hypothesis("wavy");
    assert_eq!(wavy["novelty"]["rediscovery"], false, "{wavy}");

    let report = dir.path().join("report");
    let out = run_command(
        &["report", "1", "-o", report.to_str().expect("UTF-8")],
        &store,
        &cache,
    )
    .output()
    .expect("runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let hash = near["hash"].as_str().expect("a hash");
    let page = std::fs::read_to_string(report.join("h").join(format!("{}.html", &hash[..16])))
        .expect("near_gelu's page");
    assert!(
        page.contains("nearest known component gelu: a rediscovery"),
        "{page}"
    );
}
