//! One trial of one component: split, preprocess, train, score. Every component of a trial gets
//! the same split, initialization and batch order (they all derive from the trial's seed), which
//! is what makes the comparison with the baselines paired.

use std::time::{Duration, Instant};

use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_sandbox::{Sandbox, SandboxError};
use hypoforge_spec::{ComponentKind, ErrorClass};

use crate::datasets::Dataset;
use crate::metrics::RunOutcome;
use crate::model::{self, Activation, Examples, NativeActivation, Regularizer, RunFailure};
use crate::prepare;
use crate::tasks::Task;

fn sandbox_failure(e: SandboxError) -> RunFailure {
    RunFailure {
        class: e.class(),
        message: e.to_string(),
    }
}

/// A plugin that could not be instantiated for a trial, as the trial's failure.
pub(crate) fn plugin_failure(e: hypoforge_plugin::PluginError) -> RunFailure {
    RunFailure {
        class: e.class(),
        message: e.to_string(),
    }
}

/// A sandboxed activation plugin in the model's slot.
#[derive(Debug)]
pub struct PluginActivation(pub hypoforge_plugin::Activation);

impl Activation for PluginActivation {
    fn forward(&mut self, x: &[f32], y: &mut [f32]) -> Result<(), RunFailure> {
        self.0.forward(x, y).map_err(sandbox_failure)
    }
    fn derivative(&mut self, x: &[f32], dy: &mut [f32]) -> Result<(), RunFailure> {
        self.0.derivative(x, dy).map_err(sandbox_failure)
    }
    fn forward_with_derivative(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        dy: &mut [f32],
    ) -> Result<(), RunFailure> {
        self.0
            .forward_with_derivative(x, y, dy)
            .map_err(sandbox_failure)
    }
}

/// A sandboxed regularizer plugin in the model's slot.
#[derive(Debug)]
pub struct PluginRegularizer(pub hypoforge_plugin::Regularizer);

impl Regularizer for PluginRegularizer {
    fn penalty(&mut self, w: &[f32], rows: usize, cols: usize) -> Result<f32, RunFailure> {
        self.0.penalty(w, rows, cols).map_err(sandbox_failure)
    }
    fn gradient(
        &mut self,
        w: &[f32],
        rows: usize,
        cols: usize,
        grad: &mut [f32],
    ) -> Result<(), RunFailure> {
        self.0
            .gradient(w, rows, cols, grad)
            .map_err(sandbox_failure)
    }
}

/// A preprocessor in the data slot: fitted on the training rows, then applied to both sets.
pub trait Preprocess {
    /// Fit on a row-major `rows × cols` matrix; returns the output width.
    fn fit(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<usize, RunFailure>;
    /// Transform a row-major `rows × cols` matrix into `out` (`rows × width`).
    fn transform(
        &mut self,
        data: &[f32],
        rows: usize,
        cols: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), RunFailure>;
}

impl Preprocess for hypoforge_plugin::Preprocessor {
    fn fit(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<usize, RunFailure> {
        hypoforge_plugin::Preprocessor::fit(self, data, rows, cols).map_err(sandbox_failure)
    }
    fn transform(
        &mut self,
        data: &[f32],
        rows: usize,
        cols: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), RunFailure> {
        hypoforge_plugin::Preprocessor::transform(self, data, rows, cols, out)
            .map_err(sandbox_failure)
    }
}

/// Fit a preprocessor on the training rows and transform both sets with it.
pub fn apply_preprocessor(
    pre: &mut dyn Preprocess,
    train: &mut Examples,
    valid: &mut Examples,
) -> Result<(), RunFailure> {
    let width = pre.fit(&train.features, train.rows, train.cols)?;
    for (name, set) in [("training", train), ("validation", valid)] {
        let mut out = Vec::new();
        pre.transform(&set.features, set.rows, set.cols, &mut out)?;
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(RunFailure {
                class: ErrorClass::InvalidBehaviour,
                message: format!(
                    "the preprocessor gave {} in {name} row {}, column {}",
                    out[i],
                    i / width,
                    i % width
                ),
            });
        }
        set.features = out;
        set.cols = width;
    }
    Ok(())
}

/// The component under test, in its slot; the other slots take their reference form.
pub enum Slot<'a> {
    Activation(&'a mut dyn Activation),
    Preprocessor(&'a mut dyn Preprocess),
    Regularizer(&'a mut dyn Regularizer),
}

impl std::fmt::Debug for Slot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Slot::Activation(_) => "Slot::Activation",
            Slot::Preprocessor(_) => "Slot::Preprocessor",
            Slot::Regularizer(_) => "Slot::Regularizer",
        })
    }
}

/// Train with `slot`'s component on trial `(dataset, seed)` under `config`: the split, the
/// default standardization (unless the slot is the preprocessor), the model and the training
/// run. This is the trial itself, whichever engine runs the component.
pub fn train_in_slot(
    config: &model::TrainConfig,
    validation_fraction: f64,
    dataset: &Dataset,
    seed: u64,
    slot: Slot<'_>,
) -> Result<model::TrainResult, RunFailure> {
    let objective = prepare::objective(dataset);
    let (mut train, mut valid) = prepare::split(dataset, validation_fraction, seed);
    let mut relu = NativeActivation::Relu;
    match slot {
        Slot::Activation(act) => {
            prepare::standardize(&mut train, &mut valid);
            model::train(config, objective, &train, &valid, seed, act, None)
        }
        Slot::Preprocessor(pre) => {
            apply_preprocessor(pre, &mut train, &mut valid)?;
            model::train(config, objective, &train, &valid, seed, &mut relu, None)
        }
        Slot::Regularizer(reg) => {
            prepare::standardize(&mut train, &mut valid);
            model::train(
                config,
                objective,
                &train,
                &valid,
                seed,
                &mut relu,
                Some(reg),
            )
        }
    }
}

/// A trial's result as its outcome; a deadline failure past `time_limit` says so.
pub fn outcome(
    result: Result<model::TrainResult, RunFailure>,
    time_limit: Option<Duration>,
    elapsed: Duration,
) -> RunOutcome {
    match result {
        Ok(r) => RunOutcome::Finished {
            val_loss: r.val_loss,
            val_accuracy: r.val_accuracy,
        },
        Err(e) => {
            let cause = match time_limit {
                Some(limit) if e.class == ErrorClass::Deadline && elapsed >= limit => {
                    time_limit_cause(limit)
                }
                _ => e.to_string(),
            };
            RunOutcome::Failed { cause }
        }
    }
}

/// Why a trial that ran past `limit` failed.
pub fn time_limit_cause(limit: Duration) -> String {
    format!(
        "{}: the trial ran past its time limit of {} s",
        ErrorClass::Deadline,
        limit.as_secs_f64()
    )
}

/// Train one component on one trial `(task, seed)` and report how it did. Components outside
/// the slot take their reference form: ReLU, standardization, no regularizer.
///
/// `time_limit` bounds the whole trial in wall-clock time (the plugin's calls fail once it has
/// passed), so that a plugin slow on every element cannot stall an evaluation for hours within
/// its per-call budgets. Unlike those budgets it depends on the machine and its load; it is
/// meant as a generous backstop.
pub fn run_trial(
    task: &Task,
    dataset: &Dataset,
    seed: u64,
    component: &Plugin,
    sandbox: &Sandbox,
    mut limits: PluginLimits,
    time_limit: Option<Duration>,
) -> RunOutcome {
    let started = Instant::now();
    if let Some(limit) = time_limit {
        let end = started + limit;
        limits.sandbox.expires_at = Some(limits.sandbox.expires_at.map_or(end, |t| t.min(end)));
    }
    let result = try_trial(task, dataset, seed, component, sandbox, limits);
    outcome(result, time_limit, started.elapsed())
}

fn try_trial(
    task: &Task,
    dataset: &Dataset,
    seed: u64,
    component: &Plugin,
    sandbox: &Sandbox,
    limits: PluginLimits,
) -> Result<model::TrainResult, RunFailure> {
    let (config, fraction) = (&task.train, task.validation_fraction);
    match component.meta().kind {
        ComponentKind::Activation => {
            let mut act = PluginActivation(
                component
                    .activation(sandbox, limits)
                    .map_err(plugin_failure)?,
            );
            train_in_slot(config, fraction, dataset, seed, Slot::Activation(&mut act))
        }
        ComponentKind::Preprocessor => {
            let mut pre = component
                .preprocessor(sandbox, limits)
                .map_err(plugin_failure)?;
            train_in_slot(
                config,
                fraction,
                dataset,
                seed,
                Slot::Preprocessor(&mut pre),
            )
        }
        ComponentKind::Regularizer => {
            let mut reg = PluginRegularizer(
                component
                    .regularizer(sandbox, limits)
                    .map_err(plugin_failure)?,
            );
            train_in_slot(config, fraction, dataset, seed, Slot::Regularizer(&mut reg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks;
    use hypoforge_compile::{Compiler, Limits};

    fn plugin(source: &str) -> Plugin {
        let compiler = Compiler::new(None, Limits::default()).unwrap();
        let wasm = compiler.compile(source.as_bytes()).unwrap().wasm;
        Plugin::load(Sandbox::shared().unwrap(), &wasm).unwrap()
    }

    fn quick_task(name: &str) -> (Task, Dataset) {
        let suite = tasks::suite("quick").unwrap();
        let task = suite.tasks.into_iter().find(|t| t.name == name).unwrap();
        let data = task.dataset(&[]).unwrap();
        (task, data)
    }

    fn loss(outcome: &RunOutcome) -> f64 {
        outcome
            .val_loss()
            .unwrap_or_else(|| panic!("the run failed: {outcome:?}"))
    }

    fn losses(task: &Task, data: &Dataset, p: &Plugin, seeds: std::ops::Range<u64>) -> Vec<f64> {
        let sandbox = Sandbox::shared().unwrap();
        seeds
            .map(|s| {
                loss(&run_trial(
                    task,
                    data,
                    s,
                    p,
                    sandbox,
                    PluginLimits::default(),
                    None,
                ))
            })
            .collect()
    }

    #[test]
    fn relu_plugin_beats_the_identity_control_on_circles() {
        let (task, data) = quick_task("circles");
        let relu = plugin(include_str!("../../../plugins/activation/relu.rs"));
        let identity = plugin(include_str!("../../../plugins/activation/identity.rs"));
        let (r, i) = (
            losses(&task, &data, &relu, 0..3),
            losses(&task, &data, &identity, 0..3),
        );
        for (r, i) in r.iter().zip(&i) {
            assert!(r < i, "relu {r} vs identity {i}");
        }
    }

    #[test]
    fn standardize_beats_identity_preprocessing_on_wine() {
        let (task, data) = quick_task("wine");
        let standardize = plugin(include_str!("../../../plugins/preprocessor/standardize.rs"));
        let identity = plugin(include_str!("../../../plugins/preprocessor/identity.rs"));
        let (s, i) = (
            losses(&task, &data, &standardize, 0..3),
            losses(&task, &data, &identity, 0..3),
        );
        for (s, i) in s.iter().zip(&i) {
            assert!(s < i, "standardize {s} vs identity {i}");
        }
    }

    #[test]
    fn a_trial_is_reproducible_and_the_native_relu_matches_the_plugin() {
        let (task, data) = quick_task("two_moons");
        let relu = plugin(include_str!("../../../plugins/activation/relu.rs"));
        let sandbox = Sandbox::shared().unwrap();
        let a = run_trial(
            &task,
            &data,
            9,
            &relu,
            sandbox,
            PluginLimits::default(),
            None,
        );
        let b = run_trial(
            &task,
            &data,
            9,
            &relu,
            sandbox,
            PluginLimits::default(),
            None,
        );
        assert_eq!(loss(&a).to_bits(), loss(&b).to_bits());
        // The regularizer kind trains with the native ReLU and `none` adds nothing, so its
        // trial is the activation trial with the plugin ReLU, bit for bit.
        let none = plugin(include_str!("../../../plugins/regularizer/none.rs"));
        let c = run_trial(
            &task,
            &data,
            9,
            &none,
            sandbox,
            PluginLimits::default(),
            None,
        );
        assert_eq!(loss(&a).to_bits(), loss(&c).to_bits());
        let l2 = plugin(include_str!("../../../plugins/regularizer/l2.rs"));
        let d = run_trial(&task, &data, 9, &l2, sandbox, PluginLimits::default(), None);
        assert_ne!(loss(&a).to_bits(), loss(&d).to_bits());
    }

    #[test]
    fn a_plugin_that_traps_mid_training_loses_the_trial_with_its_cause() {
        let (task, data) = quick_task("xor");
        let fragile = plugin(
            "use hypoforge_sdk::prelude::*;\n\
             fn f<R: Real>(x: R) -> R { if x.value() > 0.5 { panic!(\"too large\") } x.max(R::zero()) }\n\
             activation!(name = \"fragile\", f = f);\n",
        );
        let sandbox = Sandbox::shared().unwrap();
        let outcome = run_trial(
            &task,
            &data,
            1,
            &fragile,
            sandbox,
            PluginLimits::default(),
            None,
        );
        match outcome {
            RunOutcome::Failed { cause } => {
                assert!(
                    cause.starts_with("panic") && cause.contains("too large"),
                    "{cause}"
                );
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
