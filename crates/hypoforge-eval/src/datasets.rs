//! Datasets: the tabular and image tasks every hypothesis is trained and scored on.
//!
//! Four sources, one shape. Every source produces a [`Dataset`]: a dense row-major `f32` feature
//! matrix plus either class labels or regression targets, so the trainer never cares where the
//! numbers came from.
//!
//! - [`embedded`]: the datasets shipped in the repository's `datasets/` folder, compiled into the
//!   binary so that an evaluation needs no network and no files (see `datasets/MANIFEST.json` for
//!   sources and licenses).
//! - [`synthetic`] and the generators ([`two_moons`], [`circles`], [`spirals`], [`checkerboard`],
//!   [`friedman`]): seeded, so a seed names the same data bit for bit on every run.
//! - [`parse_csv`]/[`load_csv`]: a header row, numbers only, the label in the last column.
//! - [`parse_idx`]/[`load_idx`]: MNIST's IDX format, raw or gzip-compressed.
//!
//! [`load_dir`] gathers every CSV and IDX pair of a user's `--data-dir`.
//!
//! The loaders read untrusted files, so they never panic on any input bytes: every defect is a
//! [`DatasetError`] that says what is wrong, where (file, line, column), and what to do.

use std::collections::BTreeSet;
use std::path::PathBuf;

mod csv;
mod dir;
mod embedded;
mod idx;
mod synthetic;

pub use csv::{load_csv, parse_csv};
pub use dir::load_dir;
pub use embedded::{EMBEDDED, embedded};
pub use idx::{load_idx, parse_idx};
pub use synthetic::{SYNTHETIC, checkerboard, circles, friedman, spirals, synthetic, two_moons};

/// The most classes a classification dataset may have.
///
/// `classes` sizes the model's output layer, so a stray huge label (an ID column mistaken for
/// the label, say) must be refused rather than silently ask for millions of output units.
pub const MAX_CLASSES: usize = 1 << 16;

/// A supervised learning task: `rows` examples of `cols` features each, and their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// A short identifier: the file stem, the embedded name, or the generator's name.
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// Row-major, `rows * cols` values: row `i` is `features[i * cols..(i + 1) * cols]`.
    pub features: Vec<f32>,
    /// One target per row.
    pub target: Target,
}

/// What the model predicts for each row.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Class indices in `0..classes`. `classes` is the largest label plus one, so it may count
    /// classes that no row has (a gap in the labels, or a split that missed a rare class); it
    /// sizes the output layer and must agree between the splits of one dataset.
    Classes { labels: Vec<u32>, classes: usize },
    /// Real-valued targets, all finite.
    Regression { values: Vec<f32> },
}

/// Whether a CSV's label column holds class indices or real-valued targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    Classification,
    Regression,
}

impl Dataset {
    pub fn is_classification(&self) -> bool {
        matches!(self.target, Target::Classes { .. })
    }

    /// How many rows each class has, or `None` for a regression task.
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        let Target::Classes { labels, classes } = &self.target else {
            return None;
        };
        let mut counts = vec![0; *classes];
        for &l in labels {
            counts[l as usize] += 1;
        }
        Some(counts)
    }

    /// The number of classes, or `None` for a regression task.
    pub fn classes(&self) -> Option<usize> {
        match self.target {
            Target::Classes { classes, .. } => Some(classes),
            Target::Regression { .. } => None,
        }
    }

    /// The features of row `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.rows`.
    pub fn row(&self, i: usize) -> &[f32] {
        assert!(
            i < self.rows,
            "row {i} of a dataset with {} rows",
            self.rows
        );
        &self.features[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows at `indices`, in that order (repeats allowed): how train/validation/test splits
    /// and bootstrap samples are cut. The class count is kept even when a class is missing from
    /// the subset, so that every split of a dataset trains the same output layer.
    ///
    /// # Panics
    ///
    /// If an index is `>= self.rows`.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let features = indices.iter().flat_map(|&i| self.row(i)).copied().collect();
        let target = match &self.target {
            Target::Classes { labels, classes } => Target::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                classes: *classes,
            },
            Target::Regression { values } => Target::Regression {
                values: indices.iter().map(|&i| values[i]).collect(),
            },
        };
        Dataset {
            name: self.name.clone(),
            rows: indices.len(),
            cols: self.cols,
            features,
            target,
        }
    }
}

impl Target {
    /// The number of targets (one per row).
    pub fn len(&self) -> usize {
        match self {
            Target::Classes { labels, .. } => labels.len(),
            Target::Regression { values } => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a dataset could not be loaded or generated.
///
/// `origin` is where the bytes came from: a file's path for the `load_*` functions, the given
/// name for the `parse_*` functions. Line numbers are 1-based physical lines of the file, blank
/// lines included, so they match what an editor shows.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read `{}`: {source}; check that it exists and is readable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{origin}: line {line} is not valid UTF-8 text; save the file as UTF-8 CSV")]
    NotUtf8 { origin: String, line: usize },

    #[error(
        "{origin}: the CSV is empty; expected a header row naming the columns (label last), \
         then one row of numbers per example"
    )]
    EmptyCsv { origin: String },

    #[error(
        "{origin}: line {line} holds only numbers, so the file seems to have no header row and \
         its first example would be lost; add a header naming the columns (label last)"
    )]
    MissingHeader { origin: String, line: usize },

    #[error(
        "{origin}: no feature columns ({found} column(s) in all); a dataset needs at least one \
         feature (in a CSV, before the label in the last column)"
    )]
    NoFeatures { origin: String, found: usize },

    #[error(
        "{origin}: no data rows; a dataset needs at least one example (in a CSV, one row of \
         numbers per example below the header)"
    )]
    NoRows { origin: String },

    #[error(
        "{origin}: line {line} has {found} column(s) but the header has {expected}; give every \
         row one value per header column (no trailing comma, no commas inside values)"
    )]
    RaggedRow {
        origin: String,
        line: usize,
        expected: usize,
        found: usize,
    },

    #[error(
        "{origin}: line {line}, column {column} (`{name}`): `{cell}` is not a number; every cell \
         must be numeric (encode categories as integers)"
    )]
    NonNumeric {
        origin: String,
        line: usize,
        /// 1-based.
        column: usize,
        name: String,
        cell: String,
    },

    #[error(
        "{origin}: line {line}, column {column} (`{name}`): `{cell}` is not finite as an f32; \
         remove or impute missing and infinite values, and keep magnitudes below 3.4e38"
    )]
    NonFinite {
        origin: String,
        line: usize,
        /// 1-based.
        column: usize,
        name: String,
        cell: String,
    },

    #[error(
        "{origin}: line {line}, label column `{name}`: {value} is not a class index; \
         classification labels must be non-negative integers (`3` or `3.0`); load the file as \
         regression if the target is continuous"
    )]
    LabelNotClassIndex {
        origin: String,
        line: usize,
        name: String,
        value: f64,
    },

    #[error(
        "{origin}: line {line}, label column `{name}`: class {value} is out of range; labels \
         must be below {max} (renumber the classes 0, 1, 2, …)"
    )]
    LabelOutOfRange {
        origin: String,
        line: usize,
        name: String,
        value: f64,
        max: usize,
    },

    #[error(
        "{origin}: only {distinct} distinct class label(s); classification needs at least 2 \
         (check that the label is the last column)"
    )]
    TooFewClasses { origin: String, distinct: usize },

    #[error(
        "{origin}: IDX magic number is {found:#010x} but {expected:#010x} was expected{}; \
         the file is not an IDX {} file",
        swap_hint(*found, *expected),
        idx_kind(*expected)
    )]
    IdxMagic {
        origin: String,
        found: u32,
        expected: u32,
    },

    #[error(
        "{origin}: IDX element type {code:#04x} ({}) is not supported; convert the file to \
         unsigned bytes (0x08), the type MNIST uses",
        idx_type_name(*code)
    )]
    IdxElementType { origin: String, code: u8 },

    #[error(
        "{origin}: IDX data is truncated: its header promises {expected} bytes but the file has \
         {actual}; the file is incomplete, download it again"
    )]
    IdxTruncated {
        origin: String,
        expected: usize,
        actual: usize,
    },

    #[error(
        "{origin}: IDX file has {actual} bytes but its header promises {expected}; the trailing \
         bytes mean the header or the file is corrupt"
    )]
    IdxTrailing {
        origin: String,
        expected: usize,
        actual: usize,
    },

    #[error(
        "{origin}: IDX dimensions {dims:?} multiply past the addressable size; the header is \
         corrupt"
    )]
    IdxOverflow { origin: String, dims: Vec<u32> },

    #[error(
        "{origin}: {images} images but {labels} labels; the two IDX files must describe the same \
         examples"
    )]
    IdxCountMismatch {
        origin: String,
        images: usize,
        labels: usize,
    },

    #[error("{origin}: gzip data does not decompress ({source}); the file is corrupt or truncated")]
    Gzip {
        origin: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{origin}: gzip data decompresses to more than {limit} bytes; refusing it as a likely \
         decompression bomb (or the wrong file)"
    )]
    GzipTooLarge { origin: String, limit: u64 },

    #[error("unknown {kind} dataset `{name}`; known: {}", known.join(", "))]
    Unknown {
        kind: &'static str,
        name: String,
        known: &'static [&'static str],
    },

    #[error(
        "`{}` has no partner: expected `{expected}` next to it (IDX images and labels come in \
         pairs named X-images-idx3-ubyte[.gz] and X-labels-idx1-ubyte[.gz])",
        path.display()
    )]
    IdxUnpaired { path: PathBuf, expected: String },

    #[error(
        "two datasets are named `{name}`: `{}` and `{}`; rename one",
        first.display(),
        second.display()
    )]
    DuplicateName {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    #[error(
        "`{}` holds no datasets; expected *.csv files or IDX pairs \
         (X-images-idx3-ubyte[.gz] with X-labels-idx1-ubyte[.gz])",
        path.display()
    )]
    EmptyDir { path: PathBuf },
}

/// Wraps labels as a [`Target`] once there are at least two distinct classes: with one there is
/// nothing to learn, and it usually means the wrong column was taken as the label.
fn classes_from_labels(origin: &str, labels: Vec<u32>) -> Result<Target, DatasetError> {
    let distinct = labels.iter().collect::<BTreeSet<_>>().len();
    if distinct < 2 {
        return Err(DatasetError::TooFewClasses {
            origin: origin.to_owned(),
            distinct,
        });
    }
    let classes = labels.iter().max().map_or(0, |&max| max as usize + 1);
    Ok(Target::Classes { labels, classes })
}

/// A hint for the commonest wrong-magic mistake: passing the images file as the labels or the
/// other way round.
fn swap_hint(found: u32, expected: u32) -> String {
    match idx_kind(found) {
        "unknown" => String::new(),
        _ if found == expected => String::new(),
        kind => format!(" (that is an IDX {kind} file: are the two files swapped?)"),
    }
}

fn idx_kind(magic: u32) -> &'static str {
    match magic {
        idx::IMAGES_MAGIC => "images",
        idx::LABELS_MAGIC => "labels",
        _ => "unknown",
    }
}

fn idx_type_name(code: u8) -> &'static str {
    match code {
        0x08 => "u8",
        0x09 => "i8",
        0x0b => "i16",
        0x0c => "i32",
        0x0d => "f32",
        0x0e => "f64",
        _ => "not an IDX type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        Dataset {
            name: "toy".into(),
            rows: 3,
            cols: 2,
            features: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            target: Target::Classes {
                labels: vec![0, 2, 1],
                classes: 3,
            },
        }
    }

    #[test]
    fn row_slices_the_row_major_matrix() {
        let d = toy();
        assert_eq!(d.row(0), &[0.0, 1.0]);
        assert_eq!(d.row(2), &[4.0, 5.0]);
        assert!(d.is_classification());
        assert_eq!(d.classes(), Some(3));
        assert_eq!(d.target.len(), 3);
    }

    #[test]
    #[should_panic(expected = "row 3 of a dataset with 3 rows")]
    fn row_out_of_range_panics_with_a_clear_message() {
        toy().row(3);
    }

    #[test]
    fn subset_takes_rows_in_order_and_keeps_the_class_count() {
        let s = toy().subset(&[2, 0, 2]);
        assert_eq!(s.rows, 3);
        assert_eq!(s.features, vec![4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        // Class 2 is absent from the subset, yet the output layer stays 3 wide.
        assert_eq!(
            s.target,
            Target::Classes {
                labels: vec![1, 0, 1],
                classes: 3
            }
        );
        assert_eq!(s.name, "toy");
    }

    #[test]
    fn subset_of_regression_selects_values() {
        let mut d = toy();
        d.target = Target::Regression {
            values: vec![0.5, 1.5, 2.5],
        };
        let s = d.subset(&[1]);
        assert!(!s.is_classification());
        assert_eq!(s.classes(), None);
        assert_eq!(s.features, vec![2.0, 3.0]);
        assert_eq!(s.target, Target::Regression { values: vec![1.5] });
    }

    #[test]
    fn wrong_magic_hints_at_swapped_files() {
        let e = DatasetError::IdxMagic {
            origin: "x".into(),
            found: idx::IMAGES_MAGIC,
            expected: idx::LABELS_MAGIC,
        };
        let msg = e.to_string();
        assert!(
            msg.contains("0x00000803") && msg.contains("0x00000801"),
            "{msg}"
        );
        assert!(msg.contains("swapped"), "{msg}");
    }
}
