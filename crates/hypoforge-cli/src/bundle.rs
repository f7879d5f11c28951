//! `hypoforge bundle pack | verify | install | reproduce` and `hypoforge keygen`: sharing what a
//! run found, without trusting what someone else compiled.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hypoforge_bundle::{Bundle, ComponentEntry, NewComponent, ReadLimits, RecordedMetrics, Trust};
use hypoforge_compile::Compiler;
use hypoforge_eval::runner::{self, Entrant, Plan};
use hypoforge_eval::tasks;
use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;
use hypoforge_store::Store;
use hypoforge_validate::{SourceVerdict, check_source};

use crate::inputs::{CompileArgs, collect_files};

#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    Pack(PackArgs),
    Verify(VerifyArgs),
    Install(InstallArgs),
    Reproduce(ReproduceArgs),
}

/// Pack hypotheses into one shareable file (tar + zstd): manifest, sources, modules, SHA256SUMS
/// and an optional ed25519 signature.
///
/// From a run (`--run N`), each kind's best `--top K` new candidates go in with their one-pass
/// results and the protocol they were measured under; from files, each file is compiled and
/// validated first and goes in without results.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    hypoforge bundle pack --run 1 --top 3 --sign me.key -o found.hfb\n  \
    hypoforge bundle pack my_act.rs my_reg.rs -o mine.hfb")]
pub struct PackArgs {
    /// Hypothesis files (.rs) or folders of them.
    #[arg(
        value_name = "FILE",
        required_unless_present = "run",
        conflicts_with = "run"
    )]
    files: Vec<PathBuf>,
    /// Pack the best candidates of this run instead.
    #[arg(long, value_name = "RUN")]
    run: Option<i64>,
    /// Candidates per kind from the run.
    #[arg(long, value_name = "K", default_value_t = 3)]
    top: usize,
    /// Sign with this secret key (from `hypoforge keygen`).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// The bundle file to write.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    store: crate::run::StoreArg,
    #[command(flatten)]
    compile: CompileArgs,
}

/// Check a bundle: archive safety, every checksum, the signature; writes nothing.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
}

#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// Refuse a bundle that is not signed by one of the --trusted-key keys.
    #[arg(long, requires = "trusted_key")]
    require_signature: bool,
    /// A public key file (`NAME.pub` from `hypoforge keygen`) or the key in hex; repeatable.
    #[arg(long, value_name = "KEY")]
    trusted_key: Vec<String>,
}

/// Install a bundle's hypotheses as source files, after recompiling each one here (the shipped
/// modules are never run) and validating the result.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// Where the sources go, one folder per kind (ready for `hypoforge evaluate --kind K DIR/K`).
    #[arg(long, value_name = "DIR", default_value = "installed")]
    into: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

/// Re-evaluate a bundle's hypotheses under the protocol their results were recorded with, and
/// say for each whether the recorded win rates fall inside the new 95% intervals.
///
/// Exit status: 0 when every recorded result reproduces, 1 when one does not.
#[derive(Debug, clap::Args)]
pub struct ReproduceArgs {
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

/// Make an ed25519 key pair for signing bundles: NAME (secret, mode 0600) and NAME.pub.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The secret key's file; the public key goes to the same path plus `.pub`.
    #[arg(long, short, value_name = "NAME")]
    output: PathBuf,
}

pub fn run(command: BundleCommand) -> anyhow::Result<ExitCode> {
    match command {
        BundleCommand::Pack(args) => pack(args),
        BundleCommand::Verify(args) => verify(args),
        BundleCommand::Install(args) => install(args),
        BundleCommand::Reproduce(args) => reproduce(args),
    }
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let (secret, public) = hypoforge_bundle::generate_keypair()?;
    let mut public_path = args.output.clone().into_os_string();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    if public_path.exists() {
        bail!(
            "{} exists already; choose another name",
            public_path.display()
        );
    }
    hypoforge_bundle::write_secret_key(&args.output, &secret)?;
    hypoforge_bundle::write_public_key(&public_path, &public)?;
    println!(
        "secret key: {} (keep it private)\npublic key: {} ({})",
        args.output.display(),
        public_path.display(),
        hypoforge_bundle::public_key_hex(&public)
    );
    Ok(ExitCode::SUCCESS)
}

/// A source compiled and validated here, with what the bundle records of it.
struct Built {
    kind: ComponentKind,
    name: String,
    wasm: Vec<u8>,
    sdk_version: String,
    plugin: Plugin,
}

fn build(
    compiler: &Compiler,
    sandbox: &Sandbox,
    source: &[u8],
    kind: Option<ComponentKind>,
) -> Result<Built, String> {
    let checked = check_source(compiler, sandbox, source, kind, PluginLimits::default());
    match checked.verdict {
        SourceVerdict::Valid(plugin) => Ok(Built {
            kind: plugin.meta().kind,
            name: plugin.meta().name.clone(),
            sdk_version: plugin.meta().sdk_version.clone(),
            wasm: checked.wasm,
            plugin,
        }),
        SourceVerdict::DidNotCompile { message, .. } => {
            Err(format!("does not compile here: {message}"))
        }
        SourceVerdict::Invalid { class, message } => {
            Err(format!("is not valid here: {class}: {message}"))
        }
    }
}

/// A bundle file name stem: the component's name when it fits, its hash prefix appended when
/// two components share a name.
fn stem(name: &str, hash: &str, taken: &[String]) -> String {
    let mut stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    if stem.is_empty() {
        stem = "component".into();
    }
    if taken.contains(&stem) {
        stem = format!("{stem}_{}", &hash[..8]);
    }
    stem
}

fn pack(args: PackArgs) -> anyhow::Result<ExitCode> {
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    let signing_key = match &args.sign {
        Some(path) => Some(hypoforge_bundle::read_secret_key(path)?),
        None => None,
    };
    let mut components: Vec<NewComponent> = Vec::new();
    let mut taken = Vec::new();
    let mut add = |built: Built,
                   source: Vec<u8>,
                   provenance: Vec<(String, String)>,
                   metrics: Option<RecordedMetrics>| {
        let hash = hypoforge_spec::source_hash(&source);
        let name = stem(&built.name, &hash, &taken);
        taken.push(name.clone());
        let mut entry = ComponentEntry::new(
            built.kind,
            &name,
            hypoforge_spec::abi::ABI_VERSION,
            &built.sdk_version,
        );
        entry.provenance = provenance.into_iter().collect();
        entry.metrics = metrics;
        components.push(NewComponent {
            entry,
            source,
            wasm: built.wasm,
        });
    };
    match args.run {
        Some(run) => {
            let store = Store::open_existing(&args.store.store)?;
            let candidates = hypoforge_run::top_candidates(&store, run, args.top)?;
            if candidates.is_empty() {
                bail!("run {run} has no evaluated candidates to pack yet");
            }
            for c in candidates {
                let built = build(&compiler, sandbox, c.source.as_bytes(), Some(c.kind))
                    .map_err(|e| anyhow::anyhow!("{} {e}", c.name))?;
                let metrics = RecordedMetrics {
                    suite: c.suite.clone(),
                    seeds: c.seeds,
                    trials: c.result.per_task.iter().map(|t| t.trials).sum(),
                    b_wr: c.result.b_wr,
                    b_wr_ci: c.result.b_wr_ci,
                    bsota_wr: c.result.bsota_wr,
                    bsota_wr_ci: c.result.bsota_wr_ci,
                    mean_val_loss: c.result.mean_val_loss,
                    protocol: hypoforge_run::protocol_id(),
                };
                let mut provenance = c.provenance.clone();
                provenance.push(("run".into(), format!("{run}")));
                add(built, c.source.into_bytes(), provenance, Some(metrics));
            }
        }
        None => {
            for file in collect_files(&args.files)? {
                let source = std::fs::read(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let built = build(&compiler, sandbox, &source, None)
                    .map_err(|e| anyhow::anyhow!("{} {e}", file.display()))?;
                let origin = vec![("file".to_owned(), file.display().to_string())];
                add(built, source, origin, None);
            }
        }
    }
    let created_by = format!("hypoforge {}", env!("CARGO_PKG_VERSION"));
    hypoforge_bundle::pack(&components, &created_by, signing_key.as_ref(), &args.output)?;
    println!(
        "packed {} components into {}{}",
        components.len(),
        args.output.display(),
        if signing_key.is_some() {
            ", signed"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Open and verify a bundle under the trust the user asked for.
fn open_trusted(path: &Path, trust: &TrustArgs) -> anyhow::Result<Bundle> {
    let bundle = hypoforge_bundle::open(path, ReadLimits::default())?;
    let keys = trust
        .trusted_key
        .iter()
        .map(|k| {
            let path = Path::new(k);
            if path.exists() {
                hypoforge_bundle::read_public_key(path)
            } else {
                hypoforge_bundle::parse_public_key(k)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let trust = if trust.require_signature {
        Trust::RequireSignature { trusted: &keys }
    } else {
        Trust::Any
    };
    hypoforge_bundle::verify(&bundle, trust)?;
    Ok(bundle)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let bundle = open_trusted(&args.bundle, &args.trust)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: format {}, {} components, every checksum matches, {}",
        args.bundle.display(),
        bundle.manifest.format,
        bundle.manifest.components.len(),
        match &bundle.signed_by {
            Some(key) => format!("signed by {}", hypoforge_bundle::public_key_hex(key)),
            None => "unsigned".into(),
        }
    )?;
    for c in &bundle.manifest.components {
        let metrics = c.metrics.as_ref().map_or(String::new(), |m| {
            format!(
                "  B-WR {:.3} [{:.3}, {:.3}], BSOTA-WR {:.3} on `{}` × {} seeds",
                m.b_wr, m.b_wr_ci[0], m.b_wr_ci[1], m.bsota_wr, m.suite, m.seeds
            )
        });
        writeln!(out, "  {:<13} {}{metrics}", c.kind.to_string(), c.name)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let bundle = open_trusted(&args.bundle, &args.trust)?;
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    // Everything is rebuilt and checked before anything is written.
    let mut ready = Vec::new();
    for c in &bundle.manifest.components {
        let (source, shipped) = bundle
            .component_files(c)
            .with_context(|| format!("{} lacks its files", c.name))?;
        let built = build(&compiler, sandbox, source, Some(c.kind))
            .map_err(|e| anyhow::anyhow!("{} {e}", c.name))?;
        let same = built.wasm == shipped;
        ready.push((c, source, same));
    }
    for (c, source, same) in ready {
        let dir = args.into.join(c.kind.to_string());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{}.rs", c.name));
        if path.exists() && std::fs::read(&path).ok().as_deref() != Some(source) {
            bail!(
                "{} exists with other contents; install into another --into",
                path.display()
            );
        }
        std::fs::write(&path, source)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "installed {} ({}): recompiled and validated here{}",
            path.display(),
            c.kind,
            if same {
                "; the shipped module is byte-identical"
            } else {
                "; the shipped module differs (another toolchain or SDK) and was not used"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn reproduce(args: ReproduceArgs) -> anyhow::Result<ExitCode> {
    let bundle = open_trusted(&args.bundle, &args.trust)?;
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    let mut all_reproduced = true;
    let mut out = std::io::stdout().lock();
    // Each kind's panel is built once, however many of its components the bundle holds.
    let mut panels: HashMap<ComponentKind, Vec<Entrant>> = HashMap::new();
    for c in &bundle.manifest.components {
        let Some(recorded) = &c.metrics else {
            writeln!(out, "{}: no recorded results to reproduce", c.name)?;
            continue;
        };
        let (source, _) = bundle
            .component_files(c)
            .with_context(|| format!("{} lacks its files", c.name))?;
        let built = build(&compiler, sandbox, source, Some(c.kind))
            .map_err(|e| anyhow::anyhow!("{} {e}", c.name))?;
        let suite = tasks::suite(&recorded.suite)?;
        let mut entrants = match panels.get(&c.kind) {
            Some(panel) => panel.clone(),
            None => {
                let panel = crate::evaluate::baseline_panel(&compiler, sandbox, c.kind)?;
                panels.insert(c.kind, panel.clone());
                panel
            }
        };
        let hash = hypoforge_spec::source_hash(source);
        entrants.push(Entrant {
            name: format!("{}@bundle", built.name),
            hash: hash.clone(),
            baseline: false,
            plugin: built.plugin,
        });
        let plan = Plan {
            kind: c.kind,
            suite: &suite,
            seeds: recorded.seeds,
            extra_datasets: &[],
            limits: PluginLimits::default(),
            trial_time_limit: None,
            device: None,
            engine: None,
        };
        let evaluation = runner::evaluate(&plan, &entrants, sandbox, &|_, _| {})?;
        let new = evaluation
            .results
            .iter()
            .find(|r| r.hash == hash && !r.baseline)
            .context("the evaluation lost the component")?;
        let inside = |value: f64, ci: [f64; 2]| ci[0] - 1e-12 <= value && value <= ci[1] + 1e-12;
        let ok = inside(recorded.b_wr, new.b_wr_ci) && inside(recorded.bsota_wr, new.bsota_wr_ci);
        all_reproduced &= ok;
        writeln!(
            out,
            "{} ({}): recorded B-WR {:.3}, BSOTA-WR {:.3}; now {:.3} [{:.3}, {:.3}] and {:.3} [{:.3}, {:.3}]: {}",
            c.name,
            c.kind,
            recorded.b_wr,
            recorded.bsota_wr,
            new.b_wr,
            new.b_wr_ci[0],
            new.b_wr_ci[1],
            new.bsota_wr,
            new.bsota_wr_ci[0],
            new.bsota_wr_ci[1],
            if ok { "reproduced" } else { "NOT reproduced" }
        )?;
        if recorded.protocol != hypoforge_run::protocol_id() {
            writeln!(
                out,
                "  note: recorded under `{}`, reproduced under `{}`",
                recorded.protocol,
                hypoforge_run::protocol_id()
            )?;
        }
    }
    Ok(if all_reproduced {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
