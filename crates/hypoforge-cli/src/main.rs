//! The `hypoforge` command-line program: a thin layer over the pipeline crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bundle;
mod evaluate;
mod generate;
mod inputs;
mod reward;
mod run;
mod validate;

/// hypoforge: automated component-level ML research.
///
/// Hypotheses are single Rust files written against the hypoforge SDK (an activation function,
/// a data preprocessor or a regularizer). hypoforge compiles each into a sandboxed WebAssembly
/// plugin, checks it, and evaluates it against baseline components.
#[derive(Debug, Parser)]
#[command(
    name = "hypoforge",
    version,
    propagate_version = true,
    after_help = "Exit status: 0 on success, 1 when a hypothesis is rejected, 2 on an error (usage,\n\
                  input, store), 3 when a run stopped early and can be resumed.\n\
                  Run `hypoforge help <command>` for a command's options and examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Validate(validate::Args),
    Evaluate(evaluate::Args),
    Generate(generate::Args),
    Run(run::RunArgs),
    Resume(run::ResumeArgs),
    Status(run::StatusArgs),
    Export(run::ExportArgs),
    Report(run::ReportArgs),
    /// Share hypotheses: pack, verify, install and reproduce plugin bundles.
    Bundle {
        #[command(subcommand)]
        command: bundle::BundleCommand,
    },
    Keygen(bundle::KeygenArgs),
    Rank(reward::RankArgs),
    /// The reward model: train it on evaluated hypotheses, and measure how well it orders them.
    Reward {
        #[command(subcommand)]
        command: reward::RewardCommand,
    },
    /// Serve native plugins to `evaluate --engine native` over stdin and stdout (internal).
    #[command(hide = true)]
    NativeWorker,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::NativeWorker => return hypoforge_native::worker::main(),
        Command::Validate(args) => validate::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Run(args) => run::run(args),
        Command::Resume(args) => run::resume(args),
        Command::Status(args) => run::status(args),
        Command::Export(args) => run::export(args),
        Command::Report(args) => run::report(args),
        Command::Bundle { command } => bundle::run(command),
        Command::Keygen(args) => bundle::keygen(args),
        Command::Rank(args) => reward::rank(args),
        Command::Reward { command } => reward::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line. Library errors often quote their cause already; a
/// cause is added only when the message does not say it yet.
fn describe(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
