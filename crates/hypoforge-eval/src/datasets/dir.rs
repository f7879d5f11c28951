//! A user's `--data-dir`: every CSV and IDX pair in one folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::idx::{IMAGES_SUFFIX, LABELS_SUFFIX, idx_stem};
use super::{Dataset, DatasetError, load_csv, load_idx};

/// Loads every dataset in `dir` (not its subfolders), sorted by name: each `*.csv` with its task
/// inferred (see [`load_csv`]), and each IDX pair `X-images-idx3-ubyte[.gz]` +
/// `X-labels-idx1-ubyte[.gz]` as dataset `X`. Other files are ignored.
///
/// Stricter than skipping what does not load: a malformed file, half an IDX pair, two datasets
/// with one name, or a folder with no datasets at all is an error naming the file, since a
/// silently smaller benchmark would skew every comparison run on it.
pub fn load_dir(dir: &Path) -> Result<Vec<Dataset>, DatasetError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DatasetError::Io { path, source }
    };
    let mut csvs = Vec::new();
    let mut images = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if !path.is_file() {
            continue;
        }
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(stem) = idx_stem(&file_name, IMAGES_SUFFIX) {
            insert_unique(&mut images, stem.to_owned(), path)?;
        } else if let Some(stem) = idx_stem(&file_name, LABELS_SUFFIX) {
            insert_unique(&mut labels, stem.to_owned(), path)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"))
        {
            csvs.push(path);
        }
    }

    let mut loaded = Vec::new();
    for path in csvs {
        loaded.push((load_csv(&path, None)?, path));
    }
    for (stem, image_path) in images {
        let Some(label_path) = labels.remove(&stem) else {
            return Err(DatasetError::IdxUnpaired {
                path: image_path,
                expected: format!("{stem}{LABELS_SUFFIX}[.gz]"),
            });
        };
        loaded.push((load_idx(&image_path, &label_path)?, image_path));
    }
    if let Some((stem, label_path)) = labels.into_iter().next() {
        return Err(DatasetError::IdxUnpaired {
            path: label_path,
            expected: format!("{stem}{IMAGES_SUFFIX}[.gz]"),
        });
    }
    if loaded.is_empty() {
        return Err(DatasetError::EmptyDir {
            path: dir.to_owned(),
        });
    }

    loaded.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name));
    if let Some(pair) = loaded
        .windows(2)
        .find(|pair| pair[0].0.name == pair[1].0.name)
    {
        return Err(DatasetError::DuplicateName {
            name: pair[0].0.name.clone(),
            first: pair[0].1.clone(),
            second: pair[1].1.clone(),
        });
    }
    Ok(loaded.into_iter().map(|(dataset, _)| dataset).collect())
}

/// Records one half of an IDX pair; `X-images-idx3-ubyte` next to `X-images-idx3-ubyte.gz` is
/// ambiguous, so it is an error rather than a silent pick.
fn insert_unique(
    map: &mut BTreeMap<String, PathBuf>,
    stem: String,
    path: PathBuf,
) -> Result<(), DatasetError> {
    if let Some(first) = map.get(&stem) {
        let (first, second) = if *first < path {
            (first.clone(), path)
        } else {
            (path, first.clone())
        };
        return Err(DatasetError::DuplicateName {
            name: stem,
            first,
            second,
        });
    }
    map.insert(stem, path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::idx::tests::{gzip, pair};
    use crate::datasets::{EMBEDDED, embedded};

    fn write(dir: &Path, file: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(dir.join(file), bytes).unwrap();
    }

    /// A CSV, a gzipped IDX pair, and files that must be ignored.
    fn populated() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = pair();
        write(dir.path(), "zoo.csv", "a,b,label\n1,2,0\n3,4,1\n5,6,1\n");
        write(dir.path(), "mini-images-idx3-ubyte.gz", gzip(&images));
        write(dir.path(), "mini-labels-idx1-ubyte", labels);
        write(dir.path(), "README.md", "not a dataset");
        std::fs::create_dir(dir.path().join("nested.csv")).unwrap();
        dir
    }

    #[test]
    fn loads_csvs_and_idx_pairs_sorted_by_name() {
        let dir = populated();
        let sets = load_dir(dir.path()).unwrap();
        let names: Vec<&str> = sets.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["mini", "zoo"]);
        assert_eq!(
            (sets[0].rows, sets[0].cols, sets[0].classes()),
            (3, 4, Some(3))
        );
        assert_eq!(
            (sets[1].rows, sets[1].cols, sets[1].classes()),
            (3, 2, Some(2))
        );
    }

    #[test]
    fn a_malformed_csv_is_an_error_naming_the_file() {
        let dir = populated();
        write(dir.path(), "broken.csv", "a,label\n1,0\n2\n");
        let e = load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(e, DatasetError::RaggedRow { line: 3, .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&dir.path().join("broken.csv").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn half_an_idx_pair_is_an_error() {
        let dir = populated();
        let (images, _) = pair();
        write(dir.path(), "lonely-images-idx3-ubyte", images);
        let e = load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&e, DatasetError::IdxUnpaired { expected, .. } if expected.starts_with("lonely-labels")),
            "{e:?}"
        );
        assert!(e.to_string().contains("lonely-images-idx3-ubyte"), "{e}");

        let dir = populated();
        write(dir.path(), "orphan-labels-idx1-ubyte.gz", b"");
        let e = load_dir(dir.path()).unwrap_err();
        assert!(matches!(e, DatasetError::IdxUnpaired { .. }), "{e:?}");
    }

    #[test]
    fn two_datasets_with_one_name_are_an_error() {
        let dir = populated();
        write(dir.path(), "mini.csv", "a,label\n1,0\n2,1\n");
        let e = load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&e, DatasetError::DuplicateName { name, .. } if name == "mini"),
            "{e:?}"
        );

        let dir = populated();
        let (_, labels) = pair();
        write(dir.path(), "mini-labels-idx1-ubyte.gz", gzip(&labels));
        let e = load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&e, DatasetError::DuplicateName { name, .. } if name == "mini"),
            "{e:?}"
        );
    }

    #[test]
    fn empty_or_missing_dirs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "notes.txt", "nothing here");
        let e = load_dir(dir.path()).unwrap_err();
        assert!(matches!(e, DatasetError::EmptyDir { .. }), "{e:?}");
        let missing = dir.path().join("nope");
        let e = load_dir(&missing).unwrap_err();
        assert!(
            matches!(&e, DatasetError::Io { path, .. } if *path == missing),
            "{e:?}"
        );
    }

    #[test]
    fn the_repository_datasets_folder_loads_as_the_embedded_sets() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        let sets = load_dir(&dir).unwrap();
        let mut names: Vec<&str> = EMBEDDED.to_vec();
        names.sort_unstable();
        assert_eq!(
            sets.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            names
        );
        for d in sets {
            // Inference reaches the same task as the embedded loader's explicit one.
            assert_eq!(d, embedded(&d.name).unwrap(), "{}", d.name);
        }
    }
}
