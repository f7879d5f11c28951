//! The CSV loader: a header row, then one row of numbers per example, the label last.
//!
//! Deliberately small rather than a general CSV reader: every cell must be a number, so quoting
//! rules, escapes and type inference have nothing to do. What it does tolerate is what real
//! exports contain: surrounding whitespace, `\r\n` line ends, a UTF-8 byte-order mark, blank
//! lines, a missing or present trailing newline, and cells wrapped in double quotes.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Dataset, DatasetError, MAX_CLASSES, Target, TaskKind, classes_from_labels};

/// When the task is inferred, a label column with more distinct integers than this is taken as
/// a regression target (counts, ages, years) rather than as that many classes.
const INFER_MAX_CLASSES: usize = 100;

/// Parses CSV text into a dataset named `name`, with the last column as the label.
///
/// For [`TaskKind::Classification`] the labels must be non-negative integers (`3` or `3.0`)
/// with at least two distinct values; `classes` is the largest label plus one, gaps allowed.
/// Errors name the location as `name`.
pub fn parse_csv(name: &str, text: &str, task: TaskKind) -> Result<Dataset, DatasetError> {
    Table::parse(name, text)?.into_dataset(name, name, Some(task))
}

/// Reads a CSV file into a dataset named after the file stem.
///
/// With `task` `None` the task is inferred: classification when every label is a non-negative
/// integer and there are at most 100 distinct values, regression otherwise. Pass the task
/// explicitly for an integer-valued regression target such as a count.
pub fn load_csv(path: &Path, task: Option<TaskKind>) -> Result<Dataset, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_owned(),
        source,
    })?;
    let origin = path.display().to_string();
    let name = path.file_stem().map_or_else(
        || origin.clone(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    parse_bytes(&name, &origin, &bytes, task)
}

/// [`parse_csv`] for bytes not yet known to be UTF-8, with errors located at `origin`.
pub(super) fn parse_bytes(
    name: &str,
    origin: &str,
    bytes: &[u8],
    task: Option<TaskKind>,
) -> Result<Dataset, DatasetError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DatasetError::NotUtf8 {
        origin: origin.to_owned(),
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })?;
    Table::parse(origin, text)?.into_dataset(name, origin, task)
}

/// The parsed numbers, before the label column is interpreted.
#[derive(Debug)]
struct Table {
    label_name: String,
    cols: usize,
    features: Vec<f32>,
    labels: Vec<f32>,
    /// The line each row came from, so label errors found after parsing can still point at it.
    lines: Vec<usize>,
}

impl Table {
    fn parse(origin: &str, text: &str) -> Result<Table, DatasetError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, line)| (i + 1, line))
            .filter(|(_, line)| !line.trim().is_empty());

        let Some((header_line, header)) = lines.next() else {
            return Err(DatasetError::EmptyCsv {
                origin: origin.to_owned(),
            });
        };
        let names: Vec<&str> = header.split(',').map(clean).collect();
        if looks_like_data(&names) {
            return Err(DatasetError::MissingHeader {
                origin: origin.to_owned(),
                line: header_line,
            });
        }
        let cols = names.len() - 1;
        if cols == 0 {
            return Err(DatasetError::NoFeatures {
                origin: origin.to_owned(),
                found: names.len(),
            });
        }

        let mut table = Table {
            label_name: names[cols].to_owned(),
            cols,
            features: Vec::new(),
            labels: Vec::new(),
            lines: Vec::new(),
        };
        for (line, text) in lines {
            let found = text.split(',').count();
            if found != names.len() {
                return Err(DatasetError::RaggedRow {
                    origin: origin.to_owned(),
                    line,
                    expected: names.len(),
                    found,
                });
            }
            for (column, (cell, name)) in text.split(',').map(clean).zip(&names).enumerate() {
                let value = number(cell).map_err(|problem| {
                    let (origin, column, name, cell) = (
                        origin.to_owned(),
                        column + 1,
                        (*name).to_owned(),
                        excerpt(cell),
                    );
                    match problem {
                        CellProblem::NotANumber => DatasetError::NonNumeric {
                            origin,
                            line,
                            column,
                            name,
                            cell,
                        },
                        CellProblem::NotFinite => DatasetError::NonFinite {
                            origin,
                            line,
                            column,
                            name,
                            cell,
                        },
                    }
                })?;
                if column < cols {
                    table.features.push(value);
                } else {
                    table.labels.push(value);
                }
            }
            table.lines.push(line);
        }
        if table.lines.is_empty() {
            return Err(DatasetError::NoRows {
                origin: origin.to_owned(),
            });
        }
        Ok(table)
    }

    fn into_dataset(
        self,
        name: &str,
        origin: &str,
        task: Option<TaskKind>,
    ) -> Result<Dataset, DatasetError> {
        let target = match task.unwrap_or_else(|| self.inferred_task()) {
            TaskKind::Classification => self.classes(origin)?,
            TaskKind::Regression => Target::Regression {
                values: self.labels,
            },
        };
        Ok(Dataset {
            name: name.to_owned(),
            rows: self.lines.len(),
            cols: self.cols,
            features: self.features,
            target,
        })
    }

    fn inferred_task(&self) -> TaskKind {
        let mut distinct = BTreeSet::new();
        for &value in &self.labels {
            let Ok(class) = class_index(value) else {
                return TaskKind::Regression;
            };
            distinct.insert(class);
            if distinct.len() > INFER_MAX_CLASSES {
                return TaskKind::Regression;
            }
        }
        TaskKind::Classification
    }

    fn classes(&self, origin: &str) -> Result<Target, DatasetError> {
        let labels = self
            .labels
            .iter()
            .zip(&self.lines)
            .map(|(&value, &line)| {
                class_index(value).map_err(|problem| {
                    let (origin, name, value) =
                        (origin.to_owned(), self.label_name.clone(), f64::from(value));
                    match problem {
                        LabelProblem::NotAnIndex => DatasetError::LabelNotClassIndex {
                            origin,
                            line,
                            name,
                            value,
                        },
                        LabelProblem::OutOfRange => DatasetError::LabelOutOfRange {
                            origin,
                            line,
                            name,
                            value,
                            max: MAX_CLASSES,
                        },
                    }
                })
            })
            .collect::<Result<Vec<u32>, _>>()?;
        classes_from_labels(origin, labels)
    }
}

/// A cell's text without surrounding whitespace or double quotes.
fn clean(cell: &str) -> &str {
    let cell = cell.trim();
    cell.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .map_or(cell, str::trim)
}

/// A cell's text for an error message, cut short: a binary file read as CSV can have a
/// "cell" of megabytes.
fn excerpt(cell: &str) -> String {
    const MAX_CHARS: usize = 40;
    match cell.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &cell[..end]),
        None => cell.to_owned(),
    }
}

/// A first line made only of numbers is almost surely data from a file saved without a header
/// (numpy's `savetxt` does this); taking it as the header would silently drop an example. The
/// exception is `0,1,2,…`, the column names pandas writes for an unnamed frame.
fn looks_like_data(names: &[&str]) -> bool {
    let numeric = names.iter().all(|name| name.parse::<f64>().is_ok());
    let indices = names
        .iter()
        .enumerate()
        .all(|(i, name)| name.parse::<usize>() == Ok(i));
    numeric && !indices
}

#[derive(Debug)]
enum CellProblem {
    NotANumber,
    NotFinite,
}

/// Parses a cell as the `f32` the model will see; values beyond `f32`'s range are refused
/// along with NaN and infinities, since any of them poisons training.
fn number(cell: &str) -> Result<f32, CellProblem> {
    let value: f32 = cell.parse().map_err(|_| CellProblem::NotANumber)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(CellProblem::NotFinite)
    }
}

#[derive(Debug)]
enum LabelProblem {
    NotAnIndex,
    OutOfRange,
}

fn class_index(value: f32) -> Result<u32, LabelProblem> {
    if value < 0.0 || value.fract() != 0.0 {
        Err(LabelProblem::NotAnIndex)
    } else if value >= MAX_CLASSES as f32 {
        Err(LabelProblem::OutOfRange)
    } else {
        // A non-negative integer below 2^16: the conversion is exact.
        Ok(value as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypoforge_spec::rng::Rng;

    fn classify(text: &str) -> Result<Dataset, DatasetError> {
        parse_csv("t", text, TaskKind::Classification)
    }

    fn labels(d: &Dataset) -> (&[u32], usize) {
        match &d.target {
            Target::Classes { labels, classes } => (labels, *classes),
            Target::Regression { .. } => panic!("expected classes, got {:?}", d.target),
        }
    }

    #[test]
    fn parses_features_row_major_and_labels_last() {
        let d = classify("a,b,label\n1,2,0\n3,4.5,1\n").unwrap();
        assert_eq!((d.name.as_str(), d.rows, d.cols), ("t", 2, 2));
        assert_eq!(d.features, vec![1.0, 2.0, 3.0, 4.5]);
        assert_eq!(labels(&d), (&[0, 1][..], 2));
    }

    #[test]
    fn tolerates_whitespace_crlf_bom_quotes_blank_lines_and_no_trailing_newline() {
        let text = "\u{feff} a , \"b\" ,label\r\n\r\n 1 ,\t2, 0 \r\n\n  \n\"3\",-4e1,1.0";
        let d = classify(text).unwrap();
        assert_eq!((d.rows, d.cols), (2, 2));
        assert_eq!(d.features, vec![1.0, 2.0, 3.0, -40.0]);
        assert_eq!(labels(&d), (&[0, 1][..], 2));
    }

    #[test]
    fn classes_count_up_to_the_largest_label_even_with_gaps() {
        let d = classify("x,y\n0,0\n1,4\n2,2.0\n").unwrap();
        assert_eq!(labels(&d), (&[0, 4, 2][..], 5));
    }

    #[test]
    fn regression_keeps_real_targets() {
        let d = parse_csv("r", "x,y\n1,0.25\n2,-7\n", TaskKind::Regression).unwrap();
        assert_eq!(
            d.target,
            Target::Regression {
                values: vec![0.25, -7.0]
            }
        );
    }

    #[test]
    fn empty_or_blank_file_is_refused() {
        for text in ["", "\n\n", "  \r\n\t\n"] {
            let e = classify(text).unwrap_err();
            assert!(matches!(e, DatasetError::EmptyCsv { .. }), "{e:?}");
            assert!(e.to_string().contains("header row"), "{e}");
        }
    }

    #[test]
    fn header_only_is_refused() {
        let e = classify("a,b,label\n\n").unwrap_err();
        assert!(matches!(e, DatasetError::NoRows { .. }), "{e:?}");
        assert!(e.to_string().contains("no data rows"), "{e}");
    }

    #[test]
    fn a_label_column_alone_is_refused() {
        let e = classify("label\n0\n1\n").unwrap_err();
        assert!(
            matches!(e, DatasetError::NoFeatures { found: 1, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn a_numeric_first_line_is_taken_as_a_missing_header() {
        let e = classify("5.1,3.5,0\n4.9,3.0,1\n").unwrap_err();
        assert!(
            matches!(e, DatasetError::MissingHeader { line: 1, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("line 1"), "{e}");
        // pandas' default column names for an unnamed frame are a header, not data.
        let d = classify("0,1,2\n5.1,3.5,0\n4.9,3.0,1\n").unwrap();
        assert_eq!(d.rows, 2);
    }

    #[test]
    fn ragged_row_names_line_and_both_counts() {
        let e = classify("a,b,label\n1,2,0\n\n3,1\n").unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::RaggedRow {
                    line: 4,
                    expected: 3,
                    found: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("line 4") && msg.contains("has 2") && msg.contains("has 3"),
            "{msg}"
        );
        // A trailing comma is an extra (empty) column, not silently ignored.
        let e = classify("a,b,label\n1,2,0,\n").unwrap_err();
        assert!(
            matches!(e, DatasetError::RaggedRow { found: 4, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn non_numeric_cell_names_line_column_and_text() {
        let e = classify("a,width,label\n1,2,0\n1,wide,1\n").unwrap_err();
        let DatasetError::NonNumeric {
            line,
            column,
            name,
            cell,
            ..
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!(
            (*line, *column, name.as_str(), cell.as_str()),
            (3, 2, "width", "wide")
        );
        let msg = e.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("`width`") && msg.contains("`wide`"),
            "{msg}"
        );
        let long = "x".repeat(1_000);
        let e = classify(&format!("a,label\n{long},0\n")).unwrap_err();
        assert!(
            matches!(&e, DatasetError::NonNumeric { cell, .. } if *cell == format!("{}…", &long[..40])),
            "{e:?}"
        );
        // An empty cell is not zero.
        let e = classify("a,b,label\n1,,0\n").unwrap_err();
        assert!(
            matches!(e, DatasetError::NonNumeric { column: 2, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn non_finite_cells_are_refused() {
        for cell in ["NaN", "inf", "-Infinity", "1e39"] {
            let text = format!("a,b,label\n1,{cell},0\n2,2,1\n");
            let e = classify(&text).unwrap_err();
            assert!(
                matches!(&e, DatasetError::NonFinite { line: 2, column: 2, name, .. } if name == "b"),
                "{e:?}"
            );
            assert!(e.to_string().contains(cell), "{e}");
        }
        let e = parse_csv("t", "a,y\n1,nan\n", TaskKind::Regression).unwrap_err();
        assert!(
            matches!(e, DatasetError::NonFinite { column: 2, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn fractional_or_negative_label_is_not_a_class() {
        let e = classify("a,cls\n1,0\n2,1\n3,2.5\n").unwrap_err();
        assert!(
            matches!(&e, DatasetError::LabelNotClassIndex { line: 4, name, value, .. } if name == "cls" && *value == 2.5),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("line 4") && msg.contains("2.5") && msg.contains("`cls`"),
            "{msg}"
        );
        let e = classify("a,cls\n1,0\n2,-1\n").unwrap_err();
        assert!(
            matches!(e, DatasetError::LabelNotClassIndex { line: 3, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn huge_label_is_out_of_range() {
        let e = classify("a,cls\n1,0\n2,70000\n").unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::LabelOutOfRange {
                    line: 3,
                    max: MAX_CLASSES,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("line 3"), "{e}");
        assert_eq!(
            labels(&classify("a,cls\n1,0\n2,65535\n").unwrap()).1,
            MAX_CLASSES
        );
    }

    #[test]
    fn a_single_class_is_refused() {
        let e = classify("a,label\n1,1\n2,1.0\n").unwrap_err();
        assert!(
            matches!(e, DatasetError::TooFewClasses { distinct: 1, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("at least 2"), "{e}");
    }

    #[test]
    fn load_csv_infers_the_task_and_names_the_dataset_after_the_stem() {
        let dir = tempfile::tempdir().unwrap();
        let write = |file: &str, text: &str| {
            let path = dir.path().join(file);
            std::fs::write(&path, text).unwrap();
            path
        };

        let d = load_csv(&write("flowers.csv", "a,label\n1,0\n2,2.0\n3,1\n"), None).unwrap();
        assert_eq!(d.name, "flowers");
        assert_eq!(labels(&d), (&[0, 2, 1][..], 3));

        let d = load_csv(&write("prices.csv", "a,y\n1,0\n2,0.5\n"), None).unwrap();
        assert_eq!(
            d.target,
            Target::Regression {
                values: vec![0.0, 0.5]
            }
        );

        // More than 100 distinct integers: a count or a measurement, not classes.
        let many: String = (0..101).map(|i| format!("{i},{i}\n")).collect();
        let d = load_csv(&write("counts.csv", &format!("a,y\n{many}")), None).unwrap();
        assert!(!d.is_classification());
        let exactly_100: String = (0..100).map(|i| format!("{i},{i}\n")).collect();
        let d = load_csv(&write("hundred.csv", &format!("a,y\n{exactly_100}")), None).unwrap();
        assert_eq!(d.classes(), Some(100));

        // An explicit task overrides the inference.
        let path = write("ints.csv", "a,y\n1,0\n2,3\n");
        let d = load_csv(&path, Some(TaskKind::Regression)).unwrap();
        assert!(!d.is_classification());
    }

    #[test]
    fn load_csv_errors_carry_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.csv");
        let e = load_csv(&missing, None).unwrap_err();
        assert!(
            matches!(&e, DatasetError::Io { path, .. } if *path == missing),
            "{e:?}"
        );
        assert!(e.to_string().contains("missing.csv"), "{e}");

        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, b"a,label\n1,0\n\xff,1\n").unwrap();
        let e = load_csv(&bad, None).unwrap_err();
        assert!(matches!(e, DatasetError::NotUtf8 { line: 3, .. }), "{e:?}");
        assert!(e.to_string().contains("bad.csv"), "{e}");
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let alphabet = b"0123456789.,-+eE \t\r\nabnN\"\xef\xbb\xbf";
        let mut rng = Rng::new(11);
        for _ in 0..5_000 {
            let len = (rng.next_u64() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize])
                .collect();
            for task in [
                None,
                Some(TaskKind::Classification),
                Some(TaskKind::Regression),
            ] {
                if let Ok(d) = parse_bytes("fuzz", "fuzz", &bytes, task) {
                    assert_eq!(d.features.len(), d.rows * d.cols);
                    assert_eq!(d.target.len(), d.rows);
                }
            }
        }
    }
}
