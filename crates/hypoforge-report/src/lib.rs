//! Writes a run's static HTML report: leaderboards, a page per hypothesis, figures.
//!
//! The report is a folder of plain files that opens from disk with no server, no network and no
//! JavaScript, so that a run can be archived, mailed or browsed on a machine without hypoforge.
//! Almost everything in it was written by a language model (names, sources, error messages), so
//! every string is escaped and the pages forbid scripts outright; only [`Figure::svg`], which
//! hypoforge draws itself, goes in as markup.
//!
//! The data model is plain data with serde so that a run can be re-rendered from a saved JSON
//! dump without the store or the evaluator; this crate depends on no other hypoforge crate.

mod html;
mod pages;
mod plot;

/// HTML escaping for text and quoted attributes, for other pages of hypoforge's output.
pub use html::escape;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything a report shows, gathered by the caller so that rendering is a pure function of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub title: String,
    /// The tool and version that produced the run, e.g. "hypoforge 0.1.0", for the footer.
    pub generated_by: String,
    pub run: RunSummary,
    pub kinds: Vec<KindSection>,
    pub hypotheses: Vec<HypothesisPage>,
    pub figures: Vec<Figure>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: i64,
    /// "done", "stopped", "running": a report can be written mid-run.
    pub state: String,
    pub seed: u64,
    /// Shown verbatim so that the report alone says how to reproduce the run.
    pub config_toml: String,
    /// The funnel from generated to evaluated, in the caller's order.
    pub counts: Vec<Count>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub label: String,
    pub value: u64,
}

/// One component kind (activation, preprocessor, ...): hypotheses only compete within a kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindSection {
    pub kind: String,
    pub one_pass: Leaderboard,
    /// The longer evaluation of the one-pass leaders, when the run went that far.
    pub full: Option<FullEvaluation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leaderboard {
    pub suite: String,
    /// Trials per component, so that the width of the intervals can be read in context.
    pub trials: usize,
    /// Best first; the report ranks rows in the order given rather than re-sorting them.
    pub rows: Vec<LeaderRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FullEvaluation {
    pub board: Leaderboard,
    /// Rank correlation between the one-pass and the full leaderboard over the same components:
    /// it says whether the cheap screen can be trusted. `None` when too few components overlap.
    pub kendall_tau: Option<f64>,
    pub tau_components: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderRow {
    /// Links the row to its hypothesis page when one with the same hash is in the report.
    pub hash: String,
    pub name: String,
    pub baseline: bool,
    pub b_wr: f64,
    pub b_wr_ci: [f64; 2],
    pub bsota_wr: f64,
    pub bsota_wr_ci: [f64; 2],
    pub mean_val_loss: Option<f64>,
    /// `None` for tasks without an accuracy (regression).
    pub mean_val_acc: Option<f64>,
    pub failed_trials: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HypothesisPage {
    /// Hex SHA-256 of the source; its first 16 digits name the page's file.
    pub hash: String,
    pub kind: String,
    pub name: String,
    pub baseline: bool,
    pub source: String,
    /// Where the hypothesis came from (model, prompt, parent, ...), as key/value pairs in order.
    pub provenance: Vec<(String, String)>,
    /// `valid`, `invalid`, `did not compile`, `duplicate of <name>`: anything but `valid` lists
    /// the hypothesis among those that did not make it.
    pub verdict: String,
    /// The compiler's or validator's message, kept verbatim (multi-line).
    pub error: Option<String>,
    /// How far its behaviour is from the nearest known component, in words (N-score, nearest,
    /// and whether that makes it a rediscovery).
    pub novelty: Option<String>,
    /// What the run's reward model predicted, and whether that got it evaluated.
    pub prediction: Option<String>,
    pub checks: Vec<CheckRow>,
    pub shape: Option<Shape>,
    pub per_task: Vec<TaskRow>,
    /// "task/seed: cause" for every trial that was lost.
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// An activation's f and f′ sampled on a grid: a picture says more about a candidate than its
/// source. Points where any value is not finite are left out of the plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    pub x: Vec<f32>,
    pub f: Vec<f32>,
    pub df: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub task: String,
    pub trials: usize,
    pub b_wr: f64,
    pub bsota_wr: f64,
    pub mean_val_loss: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub title: String,
    pub caption: String,
    /// A complete `<svg>` document drawn by hypoforge. It is the one field inserted as markup,
    /// so it must never carry text from a hypothesis unescaped.
    pub svg: String,
}

/// What was written, so that the caller can print where to open the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFiles {
    pub index: PathBuf,
    /// Hypothesis pages written (one per [`ReportData::hypotheses`] entry).
    pub pages: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes the report into `dir`, creating it if needed and replacing the files of an earlier
/// report there one by one (pages of hypotheses no longer in `data` are left alone).
///
/// # Errors
///
/// [`ReportError::Io`] naming the first file or folder that could not be written.
pub fn write_report(data: &ReportData, dir: &Path) -> Result<ReportFiles, ReportError> {
    let pages_dir = dir.join(pages::PAGES_DIR);
    for d in [dir, pages_dir.as_path()] {
        fs::create_dir_all(d).map_err(|source| ReportError::Io {
            path: d.to_path_buf(),
            source,
        })?;
    }
    write_file(&dir.join("style.css"), html::STYLESHEET)?;

    let ids = pages::PageIds::new(&data.hypotheses);
    for (i, hypothesis) in data.hypotheses.iter().enumerate() {
        let page = pages::hypothesis_page(data, hypothesis);
        write_file(&pages_dir.join(format!("{}.html", ids.file_stem(i))), &page)?;
    }
    // The index goes last so that its links never point at pages not yet written.
    let index = dir.join("index.html");
    write_file(&index, &pages::index_page(data, &ids))?;
    Ok(ReportFiles {
        index,
        pages: data.hypotheses.len(),
    })
}

/// Writes through a temporary file and a rename, so that a reader (or a browser refreshing the
/// report of a running run) never sees half a page.
fn write_file(path: &Path, contents: &str) -> Result<(), ReportError> {
    let err = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the error that matters is the one already in hand.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}
