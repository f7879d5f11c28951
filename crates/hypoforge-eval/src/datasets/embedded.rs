//! The datasets compiled into the binary, so that an evaluation runs with no network and no
//! data files. The bytes are the repository's `datasets/` files, unchanged; their sources,
//! licenses and SHA-256 digests are recorded in `datasets/MANIFEST.json` (checked by a test).

use super::{Dataset, DatasetError, TaskKind, csv, parse_idx};

/// The names [`embedded`] knows, smallest first.
pub const EMBEDDED: &[&str] = &["iris", "wine", "breast_cancer", "digits", "mnist10k"];

macro_rules! dataset_file {
    ($file:literal) => {
        (
            $file,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../datasets/",
                $file
            ))
            .as_slice(),
        )
    };
}

/// Every embedded file by its name in `datasets/`.
const FILES: &[(&str, &[u8])] = &[
    dataset_file!("iris.csv"),
    dataset_file!("wine.csv"),
    dataset_file!("breast_cancer.csv"),
    dataset_file!("digits.csv"),
    dataset_file!("mnist10k-images-idx3-ubyte.gz"),
    dataset_file!("mnist10k-labels-idx1-ubyte.gz"),
];

fn file(name: &str) -> &'static [u8] {
    FILES
        .iter()
        .find(|(file, _)| *file == name)
        .map_or(&[], |(_, bytes)| bytes)
}

/// Parses the embedded dataset `name` (one of [`EMBEDDED`]); all are classification tasks.
///
/// Parsing runs on every call (mnist10k takes tens of milliseconds); callers that need a
/// dataset repeatedly should keep it.
pub fn embedded(name: &str) -> Result<Dataset, DatasetError> {
    match name {
        "mnist10k" => parse_idx(
            name,
            file("mnist10k-images-idx3-ubyte.gz"),
            file("mnist10k-labels-idx1-ubyte.gz"),
        ),
        _ if EMBEDDED.contains(&name) => csv::parse_bytes(
            name,
            name,
            file(&format!("{name}.csv")),
            Some(TaskKind::Classification),
        ),
        _ => Err(DatasetError::Unknown {
            kind: "embedded",
            name: name.to_owned(),
            known: EMBEDDED,
        }),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    const MANIFEST: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/MANIFEST.json"
    ));

    fn manifest() -> Vec<serde_json::Value> {
        serde_json::from_str(MANIFEST).unwrap()
    }

    fn class_counts(d: &Dataset) -> Vec<usize> {
        d.class_counts()
            .unwrap_or_else(|| panic!("{} is not classification", d.name))
    }

    #[test]
    fn embedded_files_match_the_manifest_digests() {
        let manifest = manifest();
        assert_eq!(manifest.len(), FILES.len());
        for (file, bytes) in FILES {
            let entry = manifest
                .iter()
                .find(|e| e["file"] == *file)
                .unwrap_or_else(|| panic!("{file} is not in MANIFEST.json"));
            assert_eq!(entry["bytes"], bytes.len(), "{file}");
            assert_eq!(
                entry["sha256"],
                hex::encode(Sha256::digest(bytes)),
                "{file}"
            );
        }
    }

    #[test]
    fn embedded_shapes_and_classes_match_the_manifest() {
        // Spelled out as well as read from the manifest, so that editing both the data and the
        // manifest still trips this test.
        let expected = [
            ("iris", 150, 4, 3),
            ("wine", 178, 13, 3),
            ("breast_cancer", 569, 30, 2),
            ("digits", 1797, 64, 10),
            ("mnist10k", 10_000, 784, 10),
        ];
        assert_eq!(expected.map(|(name, ..)| name), EMBEDDED);
        let manifest = manifest();
        for (name, rows, cols, classes) in expected {
            let entry = manifest.iter().find(|e| e["name"] == name).unwrap();
            assert_eq!(entry["task"], "classification", "{name}");
            assert_eq!(
                (entry["rows"].as_u64(), entry["features"].as_u64()),
                (Some(rows), Some(cols))
            );
            assert_eq!(entry["classes"].as_u64(), Some(classes), "{name}");

            let d = embedded(name).unwrap();
            assert_eq!(d.name, name);
            assert_eq!(
                (d.rows as u64, d.cols as u64, d.classes()),
                (rows, cols, Some(classes as usize))
            );
            assert_eq!(d.features.len(), d.rows * d.cols);
            // Every class is present: no gap inflates the output layer.
            assert!(
                class_counts(&d).iter().all(|&n| n > 0),
                "{name}: {:?}",
                class_counts(&d)
            );
        }
    }

    #[test]
    fn mnist10k_pixels_are_scaled_and_classes_as_documented() {
        let d = embedded("mnist10k").unwrap();
        assert!(d.features.iter().all(|p| (0.0..=1.0).contains(p)));
        // Real images use the whole range: both ink and paper occur.
        assert!(d.features.contains(&0.0) && d.features.contains(&1.0));
        // MANIFEST: "863 to 1,127 per class".
        let counts = class_counts(&d);
        assert_eq!(counts.iter().min(), Some(&863), "{counts:?}");
        assert_eq!(counts.iter().max(), Some(&1127), "{counts:?}");
    }

    #[test]
    fn iris_first_row_is_the_classic_setosa() {
        let d = embedded("iris").unwrap();
        assert_eq!(d.row(0), &[5.1, 3.5, 1.4, 0.2]);
        assert_eq!(class_counts(&d), vec![50, 50, 50]);
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let e = embedded("cifar10").unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::Unknown {
                    kind: "embedded",
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("`cifar10`"), "{msg}");
        assert!(EMBEDDED.iter().all(|name| msg.contains(name)), "{msg}");
    }
}
