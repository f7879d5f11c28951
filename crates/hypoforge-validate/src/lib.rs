//! Per-kind property checks a plugin must pass before anything trains with it.
//!
//! Each check has a stable name and leaves a [`CheckRecord`]; the first failure also becomes the
//! report's classified error. A check that traps ends validation (later checks are recorded as
//! skipped), because a plugin that traps once is rejected anyway and should not burn more budget.

use std::time::{Duration, Instant};

use hypoforge_plugin::{Plugin, PluginError, PluginLimits};
use hypoforge_sandbox::{Sandbox, SandboxError};
use hypoforge_spec::{
    CheckRecord, ComponentKind, DerivativeSource, ErrorClass, ErrorRecord, PluginMeta,
};

mod activation;
mod preprocessor;
mod probe;
mod regularizer;

/// Wall-clock budget for validating one plugin, all checks together, unless the caller's limits
/// set an expiry of their own. The baselines need about a tenth of a second.
pub const VALIDATION_BUDGET: Duration = Duration::from_secs(6);

/// The outcome of validating one plugin.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// What the plugin says about itself, when it loaded far enough to say.
    pub meta: Option<PluginMeta>,
    pub checks: Vec<CheckRecord>,
    /// The first failure, classified; `None` exactly when the plugin is valid.
    pub error: Option<ErrorRecord>,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.error.is_none()
    }
}

/// Where a hypothesis's source got to on its way to a usable plugin.
#[derive(Clone, Debug)]
pub enum SourceVerdict {
    /// Compiled, loaded and passed every check.
    Valid(Plugin),
    /// Refused by the source policy or by rustc.
    DidNotCompile { class: ErrorClass, message: String },
    /// Compiled, but did not load as the kind asked for or failed a check.
    Invalid { class: ErrorClass, message: String },
}

/// A source after [`check_source`].
#[derive(Clone, Debug)]
pub struct CheckedSource {
    /// The hypothesis's identity, [`hypoforge_spec::source_hash`].
    pub hash: String,
    pub verdict: SourceVerdict,
    /// The checks that ran (none when it did not compile or load).
    pub checks: Vec<CheckRecord>,
    /// The compiled module (empty when it did not compile), for callers that ship it.
    pub wasm: Vec<u8>,
}

/// Compile `source`, load it (as `kind` when given) and validate it: the one route by which any
/// source becomes a plugin that something trains with.
pub fn check_source(
    compiler: &hypoforge_compile::Compiler,
    sandbox: &Sandbox,
    source: &[u8],
    kind: Option<ComponentKind>,
    limits: PluginLimits,
) -> CheckedSource {
    let hash = hypoforge_spec::source_hash(source);
    let rejected = |verdict, checks, wasm| CheckedSource {
        hash: hash.clone(),
        verdict,
        checks,
        wasm,
    };
    let compiled = match compiler.compile(source) {
        Ok(c) => c,
        Err(e) => {
            let verdict = SourceVerdict::DidNotCompile {
                class: e.class,
                message: e.message,
            };
            return rejected(verdict, Vec::new(), Vec::new());
        }
    };
    let loaded = match kind {
        Some(kind) => Plugin::load_kind(sandbox, &compiled.wasm, kind),
        None => Plugin::load(sandbox, &compiled.wasm),
    };
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => {
            let verdict = SourceVerdict::Invalid {
                class: e.class(),
                message: e.to_string(),
            };
            return rejected(verdict, Vec::new(), compiled.wasm);
        }
    };
    let report = validate_plugin(sandbox, &plugin, limits);
    let verdict = match report.error {
        None => SourceVerdict::Valid(plugin),
        Some(e) => SourceVerdict::Invalid {
            class: e.class,
            message: e.message,
        },
    };
    CheckedSource {
        hash,
        verdict,
        checks: report.checks,
        wasm: compiled.wasm,
    }
}

/// Validate a compiled module; `expected` refuses plugins of another kind. Per-call limits come
/// from `limits`; the whole validation ends after [`VALIDATION_BUDGET`] unless
/// `limits.sandbox.expires_at` says otherwise.
pub fn validate(
    sandbox: &Sandbox,
    wasm: &[u8],
    expected: Option<ComponentKind>,
    mut limits: PluginLimits,
) -> Report {
    limits.sandbox.expires_at = limits
        .sandbox
        .expires_at
        .or_else(|| Some(Instant::now() + VALIDATION_BUDGET));
    let loaded = match expected {
        Some(kind) => Plugin::load_kind(sandbox, wasm, kind),
        None => Plugin::load(sandbox, wasm),
    };
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => {
            return Report {
                meta: None,
                checks: vec![CheckRecord {
                    name: "loads".into(),
                    passed: false,
                    detail: e.to_string(),
                }],
                error: Some(ErrorRecord {
                    class: e.class(),
                    message: e.to_string(),
                }),
            };
        }
    };
    validate_plugin(sandbox, &plugin, limits)
}

/// Run the checks of its kind on a plugin that is already loaded (for callers that go on to use
/// it, so the module is compiled once). The budget is as in [`validate`].
pub fn validate_plugin(sandbox: &Sandbox, plugin: &Plugin, mut limits: PluginLimits) -> Report {
    limits.sandbox.expires_at = limits
        .sandbox
        .expires_at
        .or_else(|| Some(Instant::now() + VALIDATION_BUDGET));
    let mut run = Run {
        checks: vec![CheckRecord {
            name: "loads".into(),
            passed: true,
            detail: format!(
                "{} `{}`, ABI {}, SDK {}",
                plugin.meta().kind,
                plugin.meta().name,
                hypoforge_spec::abi::ABI_VERSION,
                plugin.meta().sdk_version
            ),
        }],
        error: None,
        stopped: false,
    };
    let ctx = Context {
        sandbox,
        plugin,
        limits,
    };
    match plugin.meta().kind {
        ComponentKind::Activation => activation::checks(&ctx, &mut run),
        ComponentKind::Preprocessor => preprocessor::checks(&ctx, &mut run),
        ComponentKind::Regularizer => regularizer::checks(&ctx, &mut run),
    }
    Report {
        meta: Some(plugin.meta().clone()),
        checks: run.checks,
        error: run.error,
    }
}

struct Context<'a> {
    sandbox: &'a Sandbox,
    plugin: &'a Plugin,
    limits: PluginLimits,
}

impl Context<'_> {
    fn derivative_source(&self) -> DerivativeSource {
        self.plugin.meta().derivative
    }
}

/// A check's failure: either the plugin misbehaved in the sandbox, or its results are wrong.
enum Failure {
    Sandbox(SandboxError),
    Wrong(String),
}

impl From<SandboxError> for Failure {
    fn from(e: SandboxError) -> Self {
        Failure::Sandbox(e)
    }
}

impl From<PluginError> for Failure {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::Sandbox(s) => Failure::Sandbox(s),
            other => Failure::Wrong(other.to_string()),
        }
    }
}

type CheckResult = Result<String, Failure>;

struct Run {
    checks: Vec<CheckRecord>,
    error: Option<ErrorRecord>,
    stopped: bool,
}

impl Run {
    /// Run one named check unless an earlier one trapped.
    fn check(&mut self, name: &str, f: impl FnOnce() -> CheckResult) {
        if self.stopped {
            self.checks.push(CheckRecord {
                name: name.into(),
                passed: false,
                detail: "skipped: an earlier check trapped".into(),
            });
            return;
        }
        let (passed, detail) = match f() {
            Ok(detail) => (true, detail),
            Err(Failure::Wrong(detail)) => {
                self.first_error(ErrorClass::InvalidBehaviour, format!("{name}: {detail}"));
                (false, detail)
            }
            Err(Failure::Sandbox(e)) => {
                self.stopped = true;
                let detail = e.to_string();
                self.first_error(e.class(), format!("{name}: {detail}"));
                (false, detail)
            }
        };
        self.checks.push(CheckRecord {
            name: name.into(),
            passed,
            detail,
        });
    }

    fn first_error(&mut self, class: ErrorClass, message: String) {
        if self.error.is_none() {
            self.error = Some(ErrorRecord { class, message });
        }
    }
}

/// The first index where `values` is not finite, as a message naming the input.
fn first_non_finite(what: &str, inputs: &[f32], values: &[f32]) -> Option<String> {
    values.iter().position(|v| !v.is_finite()).map(|i| {
        format!(
            "{what}({}) = {}",
            fmt_input(inputs.get(i).copied()),
            values[i]
        )
    })
}

fn fmt_input(x: Option<f32>) -> String {
    x.map_or_else(|| "?".into(), |x| format!("{x:e}"))
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
