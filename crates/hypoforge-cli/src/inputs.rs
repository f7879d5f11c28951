//! What every command that reads hypotheses shares: finding the files and compiling them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use hypoforge_compile::{Compiler, Limits};

/// Compiler options.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// Where compiled plugins are cached [default: $HYPOFORGE_CACHE_DIR or ~/.cache/hypoforge].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile from scratch, neither reading nor writing the cache.
    #[arg(long)]
    no_cache: bool,
    /// Wall-clock limit for compiling one file, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    compile_timeout: f64,
}

impl CompileArgs {
    pub fn compiler(&self) -> anyhow::Result<Compiler> {
        if !(self.compile_timeout.is_finite() && self.compile_timeout > 0.0) {
            bail!("--compile-timeout must be a positive number of seconds");
        }
        let limits = Limits {
            rustc_timeout: Duration::from_secs_f64(self.compile_timeout),
            ..Limits::default()
        };
        let cache_dir = (!self.no_cache).then(|| {
            self.cache_dir
                .clone()
                .unwrap_or_else(hypoforge_compile::default_cache_dir)
        });
        Compiler::new(cache_dir.as_deref(), limits).map_err(|e| anyhow::anyhow!("{}", e.message))
    }
}

/// Expand directories into their `.rs` files (sorted); every path must exist.
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            let before = files.len();
            walk(path, &mut files).with_context(|| format!("cannot list {}", path.display()))?;
            if files.len() == before {
                bail!("{} holds no .rs files", path.display());
            }
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// A progress bar on stderr for `total` units of work, drawn only when stderr is a terminal.
pub fn progress_bar(total: usize, unit: &str) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(&format!(
        "[{{bar:30}}] {{pos}}/{{len}} {unit}, {{elapsed}} elapsed, about {{eta}} left"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("#>.");
    indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    )
    .with_style(style)
}
