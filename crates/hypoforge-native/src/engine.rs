//! The engine: worker processes that run trials of native plugins, and the differential test
//! that decides which plugins they may run.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hypoforge_eval::datasets::{Dataset, Target};
use hypoforge_eval::metrics::RunOutcome;
use hypoforge_eval::model::RunFailure;
use hypoforge_eval::runner::{EngineTrial, Entrant, TrialEngine};
use hypoforge_eval::trial;
use hypoforge_plugin::PluginLimits;
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::{ComponentKind, ErrorClass};

use crate::probe::{self, Handle, Probe};
use crate::wire::{self, Op, Reply, Request, WireConfig};

/// How the engine starts a worker: a program that runs [`crate::worker::main`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    /// This executable, with `args` (the CLI's hidden `native-worker` subcommand).
    pub fn this_executable(args: &[&str]) -> io::Result<WorkerCommand> {
        Ok(WorkerCommand {
            program: std::env::current_exe()?,
            args: args.iter().map(OsString::from).collect(),
        })
    }
}

/// The engine's limits.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub worker: WorkerCommand,
    /// Address-space cap of each worker, in bytes.
    pub worker_memory_bytes: u64,
    /// Wall-clock limit on a native trial when the evaluation sets none: without fuel, this is
    /// what stops a plugin that loops forever on an input the probes did not try.
    pub default_trial_time_limit: Duration,
    /// Wall-clock limit on each request other than a trial (a load, a dataset, a probe).
    pub request_time_limit: Duration,
}

impl EngineOptions {
    pub fn new(worker: WorkerCommand) -> EngineOptions {
        EngineOptions {
            worker,
            worker_memory_bytes: 8 << 30,
            default_trial_time_limit: Duration::from_secs(600),
            request_time_limit: Duration::from_secs(60),
        }
    }
}

/// What the differential test found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every probe gave the same bits (or the same failure class) on both builds.
    Trusted { calls: usize, values: usize },
    /// A probe gave different results: the first difference.
    Differs(String),
    /// The native build could not be tested (did not load, crashed, timed out).
    Failed(String),
}

/// Why a request to a worker got no answer.
#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error("the worker did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the native worker died ({status}){stderr}")]
    Died { status: String, stderr: String },
    #[error("the worker could not be started: {0}")]
    Spawn(io::Error),
    #[error("the worker refused: {0}")]
    Refused(String),
    #[error("the worker broke the protocol: {0}")]
    Protocol(String),
}

/// Runs the trials of admitted plugins in worker processes. See the crate documentation.
#[derive(Debug)]
pub struct NativeEngine {
    options: EngineOptions,
    /// Admitted plugins by source hash: (worker-side id, library).
    admitted: HashMap<String, (u32, PathBuf)>,
    libraries: u32,
    idle: Mutex<Vec<Worker>>,
    /// Worker-side dataset ids by (evaluation, task index).
    datasets: Mutex<HashMap<(u64, usize), u32>>,
    /// Trials a worker answered.
    trials: AtomicUsize,
}

/// Datasets a worker keeps before it is told to forget them all.
const WORKER_DATASETS: usize = 8;

impl NativeEngine {
    pub fn new(options: EngineOptions) -> NativeEngine {
        NativeEngine {
            options,
            admitted: HashMap::new(),
            libraries: 0,
            idle: Mutex::new(Vec::new()),
            datasets: Mutex::new(HashMap::new()),
            trials: AtomicUsize::new(0),
        }
    }

    /// How many trials workers have answered (finished or failed by the plugin) so far.
    pub fn trials(&self) -> usize {
        self.trials.load(Ordering::Relaxed)
    }

    /// Whether `hash`'s trials run natively.
    pub fn holds(&self, hash: &str) -> bool {
        self.admitted.contains_key(hash)
    }

    /// Run the differential test of `library` (the native build of `entrant`'s source)
    /// against `entrant`'s WebAssembly build; when it passes, the engine runs the entrant's
    /// trials from then on.
    pub fn admit(
        &mut self,
        entrant: &Entrant,
        library: &Path,
        sandbox: &Sandbox,
        limits: PluginLimits,
    ) -> Verdict {
        let id = self.libraries;
        self.libraries += 1;
        let verdict = self.differential_test(id, entrant, library, sandbox, limits);
        if matches!(verdict, Verdict::Trusted { .. }) {
            self.admitted
                .insert(entrant.hash.clone(), (id, library.to_path_buf()));
        }
        verdict
    }

    fn differential_test(
        &self,
        id: u32,
        entrant: &Entrant,
        library: &Path,
        sandbox: &Sandbox,
        limits: PluginLimits,
    ) -> Verdict {
        let kind = entrant.plugin.meta().kind;
        let mut reference = match reference(entrant, sandbox, limits) {
            Ok(r) => r,
            Err(e) => return Verdict::Failed(format!("its WebAssembly build: {e}")),
        };
        let mut worker = match self.worker() {
            Ok(w) => w,
            Err(e) => return Verdict::Failed(e.to_string()),
        };
        let limit = self.options.request_time_limit;
        if let Err(e) = worker.load(id, library, limit) {
            return Verdict::Failed(e.to_string());
        }
        let (mut calls, mut values) = (0, 0);
        for (index, probe) in probe::probes(kind).iter().enumerate() {
            let wasm = reference
                .call(probe.op, &probe.data, probe.rows, probe.cols)
                .unwrap_or_else(|| {
                    Err(RunFailure {
                        class: ErrorClass::Internal,
                        message: format!("{:?} is not a call of a {kind}", probe.op),
                    })
                });
            let native = match worker.call(id, probe, limit) {
                Ok(native) => native,
                Err(e) => return Verdict::Failed(format!("probe {index} ({:?}): {e}", probe.op)),
            };
            if let Some(difference) = compare(probe, &wasm, &native) {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(worker);
                return Verdict::Differs(format!("probe {index} ({:?}): {difference}", probe.op));
            }
            calls += 1;
            values += native
                .as_ref()
                .map_or(0, |frames| frames.iter().map(Vec::len).sum());
        }
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(worker);
        Verdict::Trusted { calls, values }
    }

    /// An idle worker, or a new one.
    fn worker(&self) -> Result<Worker, WorkerError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(w) => Ok(w),
            None => Worker::spawn(&self.options),
        }
    }

    fn dataset_id(&self, trial: &EngineTrial<'_>) -> u32 {
        let mut ids = self.datasets.lock().unwrap_or_else(|p| p.into_inner());
        let next = ids.len() as u32;
        *ids.entry((trial.evaluation, trial.task_index))
            .or_insert(next)
    }

    fn try_trial(
        &self,
        worker: &mut Worker,
        id: u32,
        library: &Path,
        trial: &EngineTrial<'_>,
        limit: Duration,
    ) -> Result<RunOutcome, WorkerError> {
        let setup = self.options.request_time_limit;
        if !worker.loaded.contains(&id) {
            worker.load(id, library, setup)?;
        }
        let dataset = self.dataset_id(trial);
        if !worker.datasets.contains(&dataset) {
            if worker.datasets.len() >= WORKER_DATASETS {
                worker.request(&Request::ForgetDatasets, &[], setup)?;
                worker.datasets.clear();
            }
            worker.send_dataset(dataset, trial.dataset, setup)?;
        }
        let request = Request::Trial {
            plugin: id,
            dataset,
            seed: trial.seed,
            validation_fraction: trial.task.validation_fraction.to_bits(),
            config: WireConfig::from(&trial.task.train),
        };
        match worker.request(&request, &[], limit)? {
            Reply::Outcome(outcome) => Ok(outcome.into()),
            other => Err(unexpected(other)),
        }
    }
}

impl TrialEngine for NativeEngine {
    fn run_trial(&self, entrant: &Entrant, trial: &EngineTrial<'_>) -> Option<RunOutcome> {
        let (id, library) = self.admitted.get(&entrant.hash)?;
        let limit = trial
            .time_limit
            .unwrap_or(self.options.default_trial_time_limit);
        // Without a worker the sandbox can still run it.
        let Ok(mut worker) = self.worker() else {
            return None;
        };
        match self.try_trial(&mut worker, *id, library, trial, limit) {
            Ok(outcome) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(worker);
                self.trials.fetch_add(1, Ordering::Relaxed);
                Some(outcome)
            }
            Err(WorkerError::TimedOut(_)) => Some(RunOutcome::Failed {
                cause: trial::time_limit_cause(limit),
            }),
            Err(e @ WorkerError::Died { .. }) => Some(RunOutcome::Failed {
                cause: format!("{}: {e}", ErrorClass::Crash),
            }),
            // Not the plugin's doing: the sandbox runs this trial instead.
            Err(_) => None,
        }
    }
}

fn unexpected(reply: Reply) -> WorkerError {
    match reply {
        Reply::Refused(why) => WorkerError::Refused(why),
        other => WorkerError::Protocol(format!("unexpected reply {other:?}")),
    }
}

/// The first difference between the two builds' answers to `probe`, if any.
fn compare(
    probe: &Probe,
    wasm: &Result<Vec<Vec<f32>>, RunFailure>,
    native: &Result<Vec<Vec<f32>>, RunFailure>,
) -> Option<String> {
    match (wasm, native) {
        (Ok(w), Ok(n)) => {
            if w.len() != n.len() {
                return Some(format!(
                    "{} outputs from WebAssembly, {} natively",
                    w.len(),
                    n.len()
                ));
            }
            for (frame, (w, n)) in w.iter().zip(n).enumerate() {
                if w.len() != n.len() {
                    return Some(format!(
                        "output {frame} has {} values from WebAssembly, {} natively",
                        w.len(),
                        n.len()
                    ));
                }
                if let Some(i) = (0..w.len()).find(|&i| !probe::same(w[i], n[i])) {
                    let input = probe
                        .data
                        .get(i)
                        .filter(|_| probe.rows == 1 || probe.op != Op::PreTransform)
                        .map(|x| format!(" (input {x:e})"))
                        .unwrap_or_default();
                    return Some(format!(
                        "output {frame}, element {i}{input}: WebAssembly {:e} ({:#010x}), native {:e} ({:#010x})",
                        w[i],
                        w[i].to_bits(),
                        n[i],
                        n[i].to_bits()
                    ));
                }
            }
            None
        }
        (Err(w), Err(n)) if w.class == n.class => None,
        (Err(w), Err(n)) => Some(format!("WebAssembly failed with {w}, native with {n}")),
        (Err(w), Ok(_)) => Some(format!("WebAssembly failed with {w}; native succeeded")),
        (Ok(_), Err(n)) => Some(format!("native failed with {n}; WebAssembly succeeded")),
    }
}

/// The WebAssembly build of `entrant`, to answer the probe calls as the reference.
fn reference(
    entrant: &Entrant,
    sandbox: &Sandbox,
    limits: PluginLimits,
) -> Result<Handle<'static>, String> {
    let p = &entrant.plugin;
    Ok(match p.meta().kind {
        ComponentKind::Activation => Handle::Activation(Box::new(trial::PluginActivation(
            p.activation(sandbox, limits).map_err(|e| e.to_string())?,
        ))),
        ComponentKind::Preprocessor => Handle::Preprocessor(Box::new(
            p.preprocessor(sandbox, limits).map_err(|e| e.to_string())?,
        )),
        ComponentKind::Regularizer => Handle::Regularizer(Box::new(trial::PluginRegularizer(
            p.regularizer(sandbox, limits).map_err(|e| e.to_string())?,
        ))),
    })
}

/// A worker process and what it holds.
#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread keeping `stderr`; it ends when the worker does.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    loaded: HashSet<u32>,
    datasets: HashSet<u32>,
}

/// How much of a worker's stderr is kept, for the message when it dies.
const STDERR_TAIL: usize = 2048;

impl Worker {
    fn spawn(options: &EngineOptions) -> Result<Worker, WorkerError> {
        let mut cmd = Command::new(&options.worker.program);
        cmd.args(&options.worker.args)
            // Nothing of this process's environment (an API key, say) reaches plugin code.
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let memory = options.worker_memory_bytes;
        // SAFETY: only async-signal-safe calls (setrlimit, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                set_limit(libc::RLIMIT_AS, memory)?;
                set_limit(libc::RLIMIT_CORE, 0)?;
                set_limit(libc::RLIMIT_NOFILE, 64)?;
                // A worker outlives no evaluator.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(WorkerError::Spawn)?;
        let stdin = BufWriter::new(child.stdin.take().expect("piped"));
        let stdout = child.stdout.take().expect("piped");
        let mut pipe = child.stderr.take().expect("piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend_from_slice(&buf[..n]);
                let excess = kept.len().saturating_sub(STDERR_TAIL);
                kept.drain(..excess);
            }
        });
        Ok(Worker {
            child,
            stdin,
            stdout,
            stderr,
            stderr_reader: Some(stderr_reader),
            loaded: HashSet::new(),
            datasets: HashSet::new(),
        })
    }

    fn load(&mut self, id: u32, library: &Path, limit: Duration) -> Result<(), WorkerError> {
        let request = Request::Load {
            id,
            path: library.to_path_buf(),
        };
        match self.request(&request, &[], limit)? {
            Reply::Done => {
                self.loaded.insert(id);
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    fn send_dataset(
        &mut self,
        id: u32,
        data: &Dataset,
        limit: Duration,
    ) -> Result<(), WorkerError> {
        let (classes, target): (Option<usize>, &[u8]) = match &data.target {
            Target::Classes { labels, classes } => (Some(*classes), bytemuck::cast_slice(labels)),
            Target::Regression { values } => (None, bytemuck::cast_slice(values)),
        };
        let request = Request::Dataset {
            id,
            rows: data.rows,
            cols: data.cols,
            classes,
        };
        match self.request(
            &request,
            &[bytemuck::cast_slice(&data.features), target],
            limit,
        )? {
            Reply::Done => {
                self.datasets.insert(id);
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    /// One probe call; the plugin's own failure is an `Ok(Err(..))`.
    fn call(
        &mut self,
        id: u32,
        probe: &Probe,
        limit: Duration,
    ) -> Result<Result<Vec<Vec<f32>>, RunFailure>, WorkerError> {
        let request = Request::Call {
            plugin: id,
            op: probe.op,
            rows: probe.rows,
            cols: probe.cols,
        };
        let deadline = Instant::now() + limit;
        match self.request(&request, &[bytemuck::cast_slice(&probe.data)], limit)? {
            Reply::Values { frames } => {
                let mut reader = self.reader(deadline, limit);
                let outputs = (0..frames)
                    .map(|_| wire::read_words(&mut reader))
                    .collect::<io::Result<Vec<Vec<f32>>>>();
                match outputs {
                    Ok(outputs) => Ok(Ok(outputs)),
                    Err(e) => Err(self.lost(e, limit)),
                }
            }
            Reply::Failed { class, message } => Ok(Err(RunFailure { class, message })),
            other => Err(unexpected(other)),
        }
    }

    /// Send `request` and its frames; read the reply header within `limit`.
    fn request(
        &mut self,
        request: &Request,
        frames: &[&[u8]],
        limit: Duration,
    ) -> Result<Reply, WorkerError> {
        let deadline = Instant::now() + limit;
        let sent = wire::write_message(&mut self.stdin, request)
            .and_then(|()| {
                frames
                    .iter()
                    .try_for_each(|f| wire::write_frame(&mut self.stdin, f))
            })
            .and_then(|()| self.stdin.flush());
        if let Err(e) = sent {
            return Err(self.lost(e, limit));
        }
        let mut reader = self.reader(deadline, limit);
        match wire::read_message(&mut reader) {
            Ok(reply) => Ok(reply),
            Err(e) => Err(self.lost(e, limit)),
        }
    }

    fn reader(&mut self, deadline: Instant, limit: Duration) -> DeadlineReader<'_> {
        DeadlineReader {
            pipe: &mut self.stdout,
            deadline,
            limit,
        }
    }

    /// What an I/O failure on the pipes means: the worker ran out of time or died.
    fn lost(&mut self, e: io::Error, limit: Duration) -> WorkerError {
        if e.kind() == io::ErrorKind::TimedOut {
            self.kill();
            return WorkerError::TimedOut(limit);
        }
        self.kill();
        let status = match self.child.wait() {
            Ok(status) => match status.signal() {
                Some(signal) => format!("signal {signal}{}", signal_name(signal)),
                None => status.to_string(),
            },
            Err(_) => "status unknown".into(),
        };
        // The worker is gone, so its stderr ends: wait for the last words.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        // One line, as a trial's cause is printed.
        let text = String::from_utf8_lossy(&tail)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::BrokenPipe {
            WorkerError::Died {
                status,
                stderr: if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                },
            }
        } else {
            WorkerError::Protocol(e.to_string())
        }
    }

    fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling the process group this worker leads.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        let _ = self.child.wait();
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => " (SIGSEGV: a stack overflow or a wild memory access)",
        libc::SIGABRT => " (SIGABRT: an abort, such as a failed allocation)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGKILL => " (SIGKILL)",
        _ => "",
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the worker's stdout, failing with `TimedOut` once `deadline` passes.
struct DeadlineReader<'a> {
    pipe: &'a mut ChildStdout,
    deadline: Instant,
    limit: Duration,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", self.limit),
                ));
            }
            let mut fd = libc::pollfd {
                fd: self.pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut fd, 1, ms) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if ready > 0 {
                return self.pipe.read(buf);
            }
        }
    }
}
