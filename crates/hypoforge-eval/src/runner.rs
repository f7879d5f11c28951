//! A whole evaluation: every component of one kind on every trial (task × seed) of a suite,
//! then paired win rates against the baseline panel.
//!
//! Jobs (trial, component) run in parallel with rayon; each job is single-threaded and seeded by
//! its trial alone, so the results are the same whatever the number of threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::batched::BatchDevice;
use crate::datasets::Dataset;
use crate::metrics::{self, MetricsError, RunOutcome, TaskWinRates, Trial};
use crate::offload;
use crate::tasks::{Suite, SuiteError, Task};
use crate::trial::run_trial;

/// A component to evaluate: a loaded plugin with its identity.
#[derive(Clone, Debug)]
pub struct Entrant {
    pub name: String,
    /// SHA-256 of the source.
    pub hash: String,
    /// Part of the baseline panel.
    pub baseline: bool,
    pub plugin: Plugin,
}

/// One component's results, as written to the JSON report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentResult {
    pub name: String,
    pub hash: String,
    pub baseline: bool,
    pub b_wr: f64,
    pub b_wr_ci: [f64; 2],
    pub bsota_wr: f64,
    pub bsota_wr_ci: [f64; 2],
    pub mean_val_loss: Option<f64>,
    pub mean_val_acc: Option<f64>,
    pub failed_trials: usize,
    /// Why trials failed, one line per failed trial: `task/seed: cause`.
    pub failures: Vec<String>,
    pub per_task: Vec<TaskWinRates>,
}

/// A finished evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub kind: ComponentKind,
    pub suite: String,
    pub trials: usize,
    pub results: Vec<ComponentResult>,
    /// What the reader should know about how the numbers were made (a component whose trials
    /// left the device for the CPU, and why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Suite(#[from] SuiteError),
    #[error(
        "the baseline panel needs at least two {0} baselines, so that each is compared with another"
    )]
    PanelTooSmall(ComponentKind),
    #[error("{name} is a {found}, but this evaluation is of {expected}s")]
    WrongKind {
        name: String,
        expected: ComponentKind,
        found: ComponentKind,
    },
    #[error("--seeds must be at least 1")]
    NoSeeds,
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The trial cache refused a result (its store cannot be written, or a budget ran out);
    /// the runs it had already taken are kept there.
    #[error("{0}")]
    Cache(String),
    /// The batch device failed; nothing it trained in the failed batch is kept.
    #[error("{0}; the CPU path (--device cpu) does not need the device")]
    Device(String),
}

/// Where finished runs live between evaluations, so that a run is trained once: a later
/// evaluation (or a resumed one) that needs it reads it back. Implementations key runs by
/// content: the component's hash, the task (everything that decides its numbers) and the seed.
pub trait TrialCache: Sync {
    /// The stored outcome, if any.
    fn get(&self, hash: &str, task: &Task, seed: u64) -> Result<Option<RunOutcome>, String>;
    /// Keep a run that just finished; called from any thread. An error stops the evaluation.
    fn put(&self, hash: &str, task: &Task, seed: u64, outcome: &RunOutcome) -> Result<(), String>;
}

/// No cache: every evaluation trains every run.
#[derive(Clone, Copy, Debug)]
pub struct NoCache;

impl TrialCache for NoCache {
    fn get(&self, _: &str, _: &Task, _: u64) -> Result<Option<RunOutcome>, String> {
        Ok(None)
    }
    fn put(&self, _: &str, _: &Task, _: u64, _: &RunOutcome) -> Result<(), String> {
        Ok(())
    }
}

/// Every run an evaluation trains, keyed by (component hash, task name, seed); it supplies
/// none, so each evaluation that uses it trains everything. For comparing two evaluations (two
/// devices, say) run by run.
#[derive(Debug, Default)]
pub struct RunLog(Mutex<RunMap>);

/// Runs by (component hash, task name, seed).
pub type RunMap = std::collections::HashMap<(String, String, u64), RunOutcome>;

impl RunLog {
    pub fn into_runs(self) -> RunMap {
        self.0.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl TrialCache for RunLog {
    fn get(&self, _: &str, _: &Task, _: u64) -> Result<Option<RunOutcome>, String> {
        Ok(None)
    }
    fn put(&self, hash: &str, task: &Task, seed: u64, outcome: &RunOutcome) -> Result<(), String> {
        let mut runs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        runs.insert((hash.to_owned(), task.name.clone(), seed), outcome.clone());
        Ok(())
    }
}

/// Another way to run a component's trials on the CPU (the native fast path's worker
/// processes). It must give what [`run_trial`] gives, bit for bit; it is trusted with an
/// entrant only after showing that.
pub trait TrialEngine: Sync + std::fmt::Debug {
    /// Run `entrant`'s trial, or `None` to leave it to the sandbox (an entrant this engine
    /// does not hold). Called from any thread.
    fn run_trial(&self, entrant: &Entrant, trial: &EngineTrial<'_>) -> Option<RunOutcome>;
}

/// One trial, as a [`TrialEngine`] is handed it.
#[derive(Clone, Copy, Debug)]
pub struct EngineTrial<'a> {
    /// Unique to one evaluation in this process: with `task_index` it names `dataset`, which
    /// does not change within an evaluation, so an engine may send it to a worker once.
    pub evaluation: u64,
    pub task_index: usize,
    pub task: &'a Task,
    pub dataset: &'a Dataset,
    pub seed: u64,
    pub time_limit: Option<Duration>,
}

/// Numbers evaluations for [`EngineTrial::evaluation`].
static EVALUATIONS: AtomicU64 = AtomicU64::new(0);

/// What to run: the kind under test, the suite, how many seeds, and with which limits.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    pub kind: ComponentKind,
    pub suite: &'a Suite,
    pub seeds: u64,
    /// Datasets from `--data-dir`, found by name before the embedded ones.
    pub extra_datasets: &'a [Dataset],
    pub limits: PluginLimits,
    /// Wall-clock limit on one component's trial; see [`run_trial`]. Trials on a device are
    /// not timed: their plugins run only in preprocessing, per-step regularizer calls and the
    /// activation's table, each under the per-call budgets.
    pub trial_time_limit: Option<Duration>,
    /// Where trials train: `None` for the CPU path (the reference), or a batch device, which
    /// trains every (component, seed) of a task at once and hands back what it cannot take.
    pub device: Option<&'a dyn BatchDevice>,
    /// Runs the CPU path's trials of the entrants it holds (the native fast path); the rest,
    /// and all of them without one, run in the sandbox.
    pub engine: Option<&'a dyn TrialEngine>,
}

/// Evaluate `entrants` (baselines and candidates of `plan.kind`) on `plan.seeds` seeds of every
/// task in the suite. `progress(done, total)` is called as jobs finish, from any thread.
pub fn evaluate(
    plan: &Plan<'_>,
    entrants: &[Entrant],
    sandbox: &Sandbox,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Evaluation, RunnerError> {
    evaluate_cached(plan, entrants, sandbox, &NoCache, progress)
}

/// [`evaluate`], taking runs from `cache` when it has them and giving it every run trained.
/// The results are the same as without a cache: a run is a pure function of its key.
pub fn evaluate_cached(
    plan: &Plan<'_>,
    entrants: &[Entrant],
    sandbox: &Sandbox,
    cache: &dyn TrialCache,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Evaluation, RunnerError> {
    let Plan {
        kind,
        suite,
        seeds,
        extra_datasets,
        limits,
        trial_time_limit,
        device,
        engine,
    } = *plan;
    if seeds == 0 {
        return Err(RunnerError::NoSeeds);
    }
    if let Some(e) = entrants.iter().find(|e| e.plugin.meta().kind != kind) {
        return Err(RunnerError::WrongKind {
            name: e.name.clone(),
            expected: kind,
            found: e.plugin.meta().kind,
        });
    }
    if entrants.iter().filter(|e| e.baseline).count() < 2 {
        return Err(RunnerError::PanelTooSmall(kind));
    }
    let data: Vec<Dataset> = suite
        .tasks
        .iter()
        .map(|t| t.dataset(extra_datasets))
        .collect::<Result<_, _>>()?;
    let trials: Vec<(usize, u64)> = (0..suite.tasks.len())
        .flat_map(|t| (0..seeds).map(move |s| (t, s)))
        .collect();
    let jobs: Vec<(usize, usize)> = (0..trials.len())
        .flat_map(|t| (0..entrants.len()).map(move |e| (t, e)))
        .collect();
    let evaluation = EVALUATIONS.fetch_add(1, Ordering::Relaxed);
    let done = AtomicUsize::new(0);
    // The first cache error; the jobs after it are skipped rather than trained and lost.
    let stopped = AtomicBool::new(false);
    let cache_error = Mutex::new(None);
    let fail = |message: String| {
        stopped.store(true, Ordering::Relaxed);
        cache_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(message);
    };
    let finish = |j: usize, outcome: RunOutcome| -> Option<RunOutcome> {
        let (t, e) = jobs[j];
        let (task, seed) = trials[t];
        if let Err(message) = cache.put(&entrants[e].hash, &suite.tasks[task], seed, &outcome) {
            fail(message);
            return None;
        }
        progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
        Some(outcome)
    };
    // A run is looked up just before it would train, since a cache may stop the evaluation
    // there (a wall-clock budget) rather than let it run on.
    let lookup = |j: usize| -> Option<RunOutcome> {
        if stopped.load(Ordering::Relaxed) {
            return None;
        }
        let (t, e) = jobs[j];
        let (task, seed) = trials[t];
        match cache.get(&entrants[e].hash, &suite.tasks[task], seed) {
            Ok(Some(outcome)) => {
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
                Some(outcome)
            }
            Ok(None) => None,
            Err(message) => {
                fail(message);
                None
            }
        }
    };
    let mut outcomes: Vec<Option<RunOutcome>> = vec![None; jobs.len()];
    let mut notes = Vec::new();
    if let Some(device) = device {
        let mut tables = offload::Tables::default();
        for (task_index, task) in suite.tasks.iter().enumerate() {
            let of_task: Vec<usize> = (0..jobs.len())
                .filter(|&j| trials[jobs[j].0].0 == task_index)
                .collect();
            let cached: Vec<Option<RunOutcome>> = of_task.par_iter().map(|&j| lookup(j)).collect();
            if stopped.load(Ordering::Relaxed) {
                break;
            }
            let mut pending = Vec::new();
            for (&j, outcome) in of_task.iter().zip(cached) {
                match outcome {
                    Some(outcome) => outcomes[j] = Some(outcome),
                    None => pending.push(j),
                }
            }
            if pending.is_empty() {
                continue;
            }
            let lane_jobs: Vec<(usize, u64)> = pending
                .iter()
                .map(|&j| (jobs[j].1, trials[jobs[j].0].1))
                .collect();
            let trained = offload::run_task(
                device,
                task,
                &data[task_index],
                kind,
                &lane_jobs,
                entrants,
                sandbox,
                limits,
                &mut tables,
                &mut notes,
            )
            .map_err(|e| RunnerError::Device(e.to_string()))?;
            for (&j, outcome) in pending.iter().zip(trained) {
                if let Some(outcome) = outcome {
                    outcomes[j] = finish(j, outcome);
                }
            }
        }
    }
    // The CPU path: every run still without an outcome (all of them, without a device).
    let trained: Vec<Option<RunOutcome>> = jobs
        .par_iter()
        .enumerate()
        .map(|(j, &(t, e))| {
            if outcomes[j].is_some() {
                return None;
            }
            if let Some(outcome) = lookup(j) {
                return Some(outcome);
            }
            if stopped.load(Ordering::Relaxed) {
                return None;
            }
            let (task_index, seed) = trials[t];
            let (task, dataset) = (&suite.tasks[task_index], &data[task_index]);
            let trial = EngineTrial {
                evaluation,
                task_index,
                task,
                dataset,
                seed,
                time_limit: trial_time_limit,
            };
            let outcome = engine
                .and_then(|engine| engine.run_trial(&entrants[e], &trial))
                .unwrap_or_else(|| {
                    run_trial(
                        task,
                        dataset,
                        seed,
                        &entrants[e].plugin,
                        sandbox,
                        limits,
                        trial_time_limit,
                    )
                });
            finish(j, outcome)
        })
        .collect();
    for (slot, outcome) in outcomes.iter_mut().zip(trained) {
        if slot.is_none() {
            *slot = outcome;
        }
    }
    if let Some(message) = cache_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(RunnerError::Cache(message));
    }
    let outcomes: Vec<RunOutcome> = outcomes.into_iter().flatten().collect();
    // outcomes[t * entrants + e]
    let column = |e: usize| -> Vec<RunOutcome> {
        (0..trials.len())
            .map(|t| outcomes[t * entrants.len() + e].clone())
            .collect()
    };
    let columns: Vec<Vec<RunOutcome>> = (0..entrants.len()).map(column).collect();
    let trial_ids: Vec<Trial> = trials
        .iter()
        .map(|&(t, seed)| Trial {
            task: suite.tasks[t].name.clone(),
            seed,
        })
        .collect();
    let mut results = Vec::with_capacity(entrants.len());
    for (e, entrant) in entrants.iter().enumerate() {
        // A baseline is compared with the rest of the panel, a candidate with all of it.
        let panel: Vec<&[RunOutcome]> = entrants
            .iter()
            .enumerate()
            .filter(|&(b, other)| other.baseline && b != e)
            .map(|(b, _)| columns[b].as_slice())
            .collect();
        let rates = metrics::win_rates(&trial_ids, &columns[e], &panel)?;
        let failures = columns[e]
            .iter()
            .zip(&trial_ids)
            .filter_map(|(o, t)| match o {
                RunOutcome::Failed { cause } => Some(format!("{}/{}: {cause}", t.task, t.seed)),
                RunOutcome::Finished { val_loss, .. } if !val_loss.is_finite() => {
                    Some(format!("{}/{}: validation loss {val_loss}", t.task, t.seed))
                }
                RunOutcome::Finished { .. } => None,
            })
            .collect();
        results.push(ComponentResult {
            name: entrant.name.clone(),
            hash: entrant.hash.clone(),
            baseline: entrant.baseline,
            b_wr: rates.b_wr,
            b_wr_ci: rates.b_wr_ci,
            bsota_wr: rates.bsota_wr,
            bsota_wr_ci: rates.bsota_wr_ci,
            mean_val_loss: rates.mean_val_loss,
            mean_val_acc: rates.mean_val_accuracy,
            failed_trials: rates.failed_trials,
            failures,
            per_task: rates.per_task,
        });
    }
    // Leaderboard order: B-WR, then BSOTA-WR, then name for a stable tie-break.
    results.sort_by(|a, b| {
        b.b_wr
            .total_cmp(&a.b_wr)
            .then(b.bsota_wr.total_cmp(&a.bsota_wr))
            .then(a.name.cmp(&b.name))
    });
    Ok(Evaluation {
        kind,
        suite: suite.name.clone(),
        trials: trials.len(),
        results,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::parse_suite;
    use hypoforge_compile::{Compiler, Limits};

    fn entrant(compiler: &Compiler, source: &str, baseline: bool) -> Entrant {
        let compiled = compiler.compile(source.as_bytes()).unwrap();
        let plugin = Plugin::load(Sandbox::shared().unwrap(), &compiled.wasm).unwrap();
        Entrant {
            name: plugin.meta().name.clone(),
            hash: compiled.source_hash,
            baseline,
            plugin,
        }
    }

    fn small_suite() -> Suite {
        parse_suite(
            "name = \"small\"\n[defaults]\nhidden = [16, 16]\nmin_steps = 20\n\
             [[task]]\nname = \"xor\"\ndataset = \"synthetic:xor\"\nsamples = 300\n\
             [[task]]\nname = \"moons\"\ndataset = \"synthetic:two_moons\"\nsamples = 300\n",
            "test",
        )
        .unwrap()
    }

    const RELU: &str = include_str!("../../../plugins/activation/relu.rs");

    fn activation_panel(compiler: &Compiler) -> Vec<Entrant> {
        vec![
            entrant(compiler, RELU, true),
            entrant(
                compiler,
                include_str!("../../../plugins/activation/identity.rs"),
                true,
            ),
            entrant(
                compiler,
                include_str!("../../../plugins/activation/tanh.rs"),
                true,
            ),
        ]
    }

    fn run(entrants: &[Entrant], seeds: u64) -> Result<Evaluation, RunnerError> {
        let suite = small_suite();
        let plan = Plan {
            kind: ComponentKind::Activation,
            suite: &suite,
            seeds,
            extra_datasets: &[],
            limits: PluginLimits::default(),
            trial_time_limit: None,
            device: None,
            engine: None,
        };
        evaluate(&plan, entrants, Sandbox::shared().unwrap(), &|_, _| {})
    }

    #[test]
    fn identity_loses_to_the_panel_on_the_non_linear_quick_tasks() {
        let compiler = Compiler::new(None, Limits::default()).unwrap();
        let entrants: Vec<Entrant> = crate::baselines::sources(ComponentKind::Activation)
            .iter()
            .map(|(_, source)| entrant(&compiler, source, true))
            .collect();
        let non_linear = ["two_moons", "circles", "spirals", "xor"];
        let mut suite = crate::tasks::suite("quick").unwrap();
        suite
            .tasks
            .retain(|t| non_linear.contains(&t.name.as_str()));
        assert_eq!(
            suite.tasks.len(),
            non_linear.len(),
            "the quick suite changed"
        );
        let plan = Plan {
            kind: ComponentKind::Activation,
            suite: &suite,
            seeds: 3,
            extra_datasets: &[],
            limits: PluginLimits::default(),
            trial_time_limit: None,
            device: None,
            engine: None,
        };
        let eval = evaluate(&plan, &entrants, Sandbox::shared().unwrap(), &|_, _| {}).unwrap();
        let by_name = |name: &str| eval.results.iter().find(|r| r.name == name).unwrap();
        let (identity, relu) = (by_name("identity"), by_name("relu"));
        for task in &identity.per_task {
            assert!(
                task.b_wr < 0.2,
                "identity's B-WR on {} is {}, want < 0.2",
                task.task,
                task.b_wr
            );
        }
        assert!(
            identity.b_wr < 0.2 && relu.b_wr > 0.5,
            "{identity:?} {relu:?}"
        );
    }

    #[test]
    fn a_copy_of_a_baseline_ties_with_it_and_inherits_its_record() {
        let compiler = Compiler::new(None, Limits::default()).unwrap();
        let mut entrants = activation_panel(&compiler);
        entrants.push(entrant(
            &compiler,
            &RELU.replace("\"relu\"", "\"relu_copy\""),
            false,
        ));
        let eval = run(&entrants, 2).unwrap();
        assert_eq!(eval.trials, 4);
        let get = |name: &str| eval.results.iter().find(|r| r.name == name).unwrap();
        let (relu, copy) = (get("relu"), get("relu_copy"));
        assert_eq!(relu.mean_val_loss, copy.mean_val_loss);
        // relu faces the 2 other baselines; the copy faces those 2 and relu, tying relu (½).
        let expected = (2.0 * relu.b_wr + 0.5) / 3.0;
        assert!(
            (copy.b_wr - expected).abs() < 1e-12,
            "{} vs {expected}",
            copy.b_wr
        );
        // A tie with the best baseline is no state-of-the-art win.
        assert_eq!(copy.bsota_wr, 0.0);
        for r in &eval.results {
            assert!(
                (0.0..=1.0).contains(&r.b_wr) && r.bsota_wr <= r.b_wr,
                "{r:?}"
            );
            assert!(r.b_wr_ci[0] <= r.b_wr && r.b_wr <= r.b_wr_ci[1]);
            assert_eq!(r.per_task.len(), 2);
        }
        // The leaderboard is sorted by B-WR.
        assert!(eval.results.windows(2).all(|w| w[0].b_wr >= w[1].b_wr));
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let compiler = Compiler::new(None, Limits::default()).unwrap();
        let entrants = activation_panel(&compiler);
        let with_threads = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(|| run(&entrants, 2).unwrap())
        };
        let one = with_threads(1);
        let two = with_threads(2);
        assert_eq!(one, two);
        let loss = |e: &Evaluation| {
            e.results
                .iter()
                .map(|r| r.mean_val_loss.map(f64::to_bits))
                .collect::<Vec<_>>()
        };
        assert_eq!(loss(&one), loss(&two));
    }

    #[test]
    fn bad_setups_are_refused_with_reasons() {
        let compiler = Compiler::new(None, Limits::default()).unwrap();
        let mut entrants = activation_panel(&compiler);
        assert!(matches!(run(&entrants, 0), Err(RunnerError::NoSeeds)));
        entrants.push(entrant(
            &compiler,
            include_str!("../../../plugins/regularizer/l2.rs"),
            false,
        ));
        let err = run(&entrants, 1).unwrap_err();
        assert!(matches!(err, RunnerError::WrongKind { .. }), "{err}");
        assert!(err.to_string().contains("l2"), "{err}");
        let lonely = vec![entrant(&compiler, RELU, true)];
        assert!(matches!(
            run(&lonely, 1),
            Err(RunnerError::PanelTooSmall(_))
        ));
    }

    /// A cache whose lookups fail once a run has been stored, as a wall-clock budget does
    /// once time has passed: an evaluation must stop there, not train what it looked up early.
    #[derive(Default)]
    struct RunningOut {
        puts: AtomicUsize,
    }
    impl TrialCache for RunningOut {
        fn get(&self, _: &str, _: &Task, _: u64) -> Result<Option<RunOutcome>, String> {
            if self.puts.load(Ordering::SeqCst) > 0 {
                return Err("out of time".into());
            }
            Ok(None)
        }
        fn put(&self, _: &str, _: &Task, _: u64, _: &RunOutcome) -> Result<(), String> {
            self.puts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn a_cache_that_stops_the_evaluation_stops_the_training_too() {
        let compiler = Compiler::new(None, Limits::default()).unwrap();
        let entrants = activation_panel(&compiler);
        let suite = small_suite();
        let jobs = suite.tasks.len() * 2 * entrants.len();
        let cpu = crate::batched::CpuDevice;
        for device in [None, Some(&cpu as &dyn BatchDevice)] {
            let plan = Plan {
                kind: ComponentKind::Activation,
                suite: &suite,
                seeds: 2,
                extra_datasets: &[],
                limits: PluginLimits::default(),
                trial_time_limit: None,
                device,
                engine: None,
            };
            let cache = RunningOut::default();
            let result = evaluate_cached(
                &plan,
                &entrants,
                Sandbox::shared().unwrap(),
                &cache,
                &|_, _| {},
            );
            assert!(matches!(result, Err(RunnerError::Cache(ref m)) if m == "out of time"));
            let trained = cache.puts.load(Ordering::SeqCst);
            // At most the runs already under way when the first finished: one per thread on
            // the CPU path, the first task's batch on a device.
            let bound = match device {
                None => rayon::current_num_threads(),
                Some(_) => jobs / suite.tasks.len(),
            };
            assert!(
                trained >= 1 && trained <= bound,
                "{trained} of {jobs} trained"
            );
        }
    }

    #[test]
    fn a_trial_past_its_time_limit_is_lost_with_that_cause() {
        let compiler = Compiler::new(None, Limits::default()).unwrap();
        let mut entrants = activation_panel(&compiler);
        // Hundreds of thousands of instructions per element, within a fuel budget raised to
        // match: seconds per trial, however fast the machine or vectorized the loop, far past
        // the 150 ms it gets here.
        entrants.push(entrant(
            &compiler,
            "use hypoforge_sdk::prelude::*;\n\
             fn f<R: Real>(x: R) -> R {\n\
                 let mut y = x;\n\
                 for i in 0..100_000 { y = y * 0.999_999 + x * (i as f32 * 1e-12); }\n\
                 y\n\
             }\n\
             activation!(name = \"sluggish\", f = f);\n",
            false,
        ));
        let mut limits = PluginLimits::default();
        limits.activation.per_element = 10_000_000;
        let suite = small_suite();
        let plan = Plan {
            kind: ComponentKind::Activation,
            suite: &suite,
            seeds: 1,
            extra_datasets: &[],
            limits,
            trial_time_limit: Some(Duration::from_millis(150)),
            device: None,
            engine: None,
        };
        let started = std::time::Instant::now();
        let eval = evaluate(&plan, &entrants, Sandbox::shared().unwrap(), &|_, _| {}).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the limit did not bite"
        );
        let slow = eval.results.iter().find(|r| r.name == "sluggish").unwrap();
        assert_eq!(slow.failed_trials, 2, "{:?}", slow.failures);
        assert!(
            slow.failures
                .iter()
                .all(|f| f.contains("ran past its time limit of 0.15 s")),
            "{:?}",
            slow.failures
        );
        let relu = eval.results.iter().find(|r| r.name == "relu").unwrap();
        assert_eq!(relu.failed_trials, 0, "the fast entrants finish within it");
    }

    #[test]
    fn failed_trials_are_counted_with_their_causes() {
        let compiler = Compiler::new(None, Limits::default()).unwrap();
        let mut entrants = activation_panel(&compiler);
        entrants.push(entrant(
            &compiler,
            "use hypoforge_sdk::prelude::*;\n\
             fn f<R: Real>(x: R) -> R { if x.value() > 0.5 { panic!(\"boom\") } x }\n\
             activation!(name = \"fragile\", f = f);\n",
            false,
        ));
        let eval = run(&entrants, 1).unwrap();
        let fragile = eval.results.iter().find(|r| r.name == "fragile").unwrap();
        assert_eq!(fragile.failed_trials, 2);
        assert_eq!((fragile.b_wr, fragile.bsota_wr), (0.0, 0.0));
        assert!(
            fragile.failures.iter().all(|f| f.contains("boom")),
            "{:?}",
            fragile.failures
        );
    }
}
