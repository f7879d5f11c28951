//! The `hypoforge` command-line program: a thin layer over the pipeline crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod evaluate;
mod generate;
mod inputs;
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
    after_help = "Exit status: 0 on success, 1 when a hypothesis is rejected, 2 on a usage error.\n\
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Generate(args) => generate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
