//! The IDX loader: the format MNIST (and its many look-alikes) ship in, raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic (two zero bytes, the element type, the number of dimensions),
//! one big-endian `u32` per dimension, then the elements. Only what image classification needs
//! is supported: `u8` images of shape `count × height × width` with `u8` labels of shape
//! `count`. Every size is checked against the bytes actually present before anything is
//! allocated from it, so a hostile header cannot ask for memory.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::{Dataset, DatasetError, classes_from_labels};

pub(super) const IMAGES_MAGIC: u32 = 0x0000_0803;
pub(super) const LABELS_MAGIC: u32 = 0x0000_0801;
/// File names `X-images-idx3-ubyte[.gz]` and `X-labels-idx1-ubyte[.gz]`, as MNIST's own.
pub(super) const IMAGES_SUFFIX: &str = "-images-idx3-ubyte";
pub(super) const LABELS_SUFFIX: &str = "-labels-idx1-ubyte";

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const U8_ELEMENTS: u8 = 0x08;
/// The most bytes a gzip file may decompress to. Full MNIST's training images are 47 MB, so
/// this leaves room for larger image sets while a decompression bomb (gzip reaches 1000:1)
/// still cannot exhaust memory.
const MAX_DECOMPRESSED: u64 = 512 << 20;

/// Parses an IDX images/labels pair into a classification dataset named `name`.
///
/// Each input may be raw or gzip-compressed (detected by its magic bytes). Pixels are scaled
/// from `0..=255` to `[0, 1]` and flattened row-major, so `cols = height * width`; `classes` is
/// the largest label plus one.
pub fn parse_idx(name: &str, images: &[u8], labels: &[u8]) -> Result<Dataset, DatasetError> {
    parse_pair(
        name,
        name,
        (&format!("{name} images"), images),
        (&format!("{name} labels"), labels),
    )
}

/// Reads an IDX images/labels pair. The dataset is named `X` for images named
/// `X-images-idx3-ubyte[.gz]`, else after the images file's stem.
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset, DatasetError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| DatasetError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let (image_bytes, label_bytes) = (read(images)?, read(labels)?);
    let file_name = images
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match idx_stem(&file_name, IMAGES_SUFFIX) {
        Some(stem) => stem.to_owned(),
        None => images
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or(file_name),
    };
    parse_pair(
        &name,
        &format!("{} with {}", images.display(), labels.display()),
        (&images.display().to_string(), &image_bytes),
        (&labels.display().to_string(), &label_bytes),
    )
}

/// `X` for a file named `X{suffix}` or `X{suffix}.gz`.
pub(super) fn idx_stem<'a>(file_name: &'a str, suffix: &str) -> Option<&'a str> {
    let base = file_name.strip_suffix(".gz").unwrap_or(file_name);
    base.strip_suffix(suffix).filter(|stem| !stem.is_empty())
}

/// `origin` locates errors about the pair as a whole; each file's own `(origin, bytes)` locates
/// errors about that file.
fn parse_pair(
    name: &str,
    origin: &str,
    (images_origin, images): (&str, &[u8]),
    (labels_origin, labels): (&str, &[u8]),
) -> Result<Dataset, DatasetError> {
    let images = decompress(images_origin, images, MAX_DECOMPRESSED)?;
    let labels = decompress(labels_origin, labels, MAX_DECOMPRESSED)?;
    let ([count, height, width], pixels) = parse_file::<3>(images_origin, &images)?;
    let ([label_count], labels) = parse_file::<1>(labels_origin, &labels)?;

    if count != label_count {
        return Err(DatasetError::IdxCountMismatch {
            origin: origin.to_owned(),
            images: count,
            labels: label_count,
        });
    }
    if count == 0 {
        return Err(DatasetError::NoRows {
            origin: origin.to_owned(),
        });
    }
    // Cannot overflow: parse_file checked that count * height * width bytes are present.
    let cols = height * width;
    if cols == 0 {
        return Err(DatasetError::NoFeatures {
            origin: images_origin.to_owned(),
            found: 0,
        });
    }
    let target = classes_from_labels(origin, labels.iter().map(|&l| u32::from(l)).collect())?;
    Ok(Dataset {
        name: name.to_owned(),
        rows: count,
        cols,
        features: pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        target,
    })
}

/// Decompresses gzip input (up to `limit` bytes); passes anything else through untouched.
fn decompress<'a>(
    origin: &str,
    bytes: &'a [u8],
    limit: u64,
) -> Result<Cow<'a, [u8]>, DatasetError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    // Multi-member: `cat a.gz b.gz` is valid gzip, and some tools write files that way.
    MultiGzDecoder::new(bytes)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| DatasetError::Gzip {
            origin: origin.to_owned(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(DatasetError::GzipTooLarge {
            origin: origin.to_owned(),
            limit,
        });
    }
    Ok(Cow::Owned(out))
}

/// Checks an IDX file of `u8` elements with `N` dimensions, and returns the dimensions and
/// the elements, which are exactly as many bytes as the dimensions multiply to.
fn parse_file<'a, const N: usize>(
    origin: &str,
    bytes: &'a [u8],
) -> Result<([usize; N], &'a [u8]), DatasetError> {
    let expected = u32::from(U8_ELEMENTS) << 8 | N as u32;
    let truncated = |expected| DatasetError::IdxTruncated {
        origin: origin.to_owned(),
        expected,
        actual: bytes.len(),
    };
    let Some(&magic) = bytes.first_chunk::<4>() else {
        return Err(truncated(4));
    };
    let found = u32::from_be_bytes(magic);
    let wrong_magic = || DatasetError::IdxMagic {
        origin: origin.to_owned(),
        found,
        expected,
    };
    let [zero0, zero1, element_type, _] = magic;
    if zero0 != 0 || zero1 != 0 {
        return Err(wrong_magic());
    }
    if element_type != U8_ELEMENTS {
        return Err(DatasetError::IdxElementType {
            origin: origin.to_owned(),
            code: element_type,
        });
    }
    if found != expected {
        return Err(wrong_magic());
    }

    let header_len = 4 + 4 * N;
    let Some(dim_bytes) = bytes.get(4..header_len) else {
        return Err(truncated(header_len));
    };
    let mut raw = [0u32; N];
    for (dim, chunk) in raw.iter_mut().zip(dim_bytes.chunks_exact(4)) {
        *dim = chunk
            .iter()
            .fold(0, |acc, &byte| acc << 8 | u32::from(byte));
    }
    let dims = raw.map(|dim| dim as usize);
    let total = dims
        .iter()
        .try_fold(1usize, |acc, &dim| acc.checked_mul(dim))
        .and_then(|elements| elements.checked_add(header_len))
        .ok_or_else(|| DatasetError::IdxOverflow {
            origin: origin.to_owned(),
            dims: raw.to_vec(),
        })?;
    match bytes.len().cmp(&total) {
        std::cmp::Ordering::Less => Err(truncated(total)),
        std::cmp::Ordering::Greater => Err(DatasetError::IdxTrailing {
            origin: origin.to_owned(),
            expected: total,
            actual: bytes.len(),
        }),
        std::cmp::Ordering::Equal => Ok((dims, &bytes[header_len..])),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use super::*;
    use crate::datasets::Target;
    use hypoforge_spec::rng::Rng;

    pub(in crate::datasets) fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for dim in dims {
            out.extend(dim.to_be_bytes());
        }
        out.extend(data);
        out
    }

    pub(in crate::datasets) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Three 2×2 images and their labels.
    pub(in crate::datasets) fn pair() -> (Vec<u8>, Vec<u8>) {
        let pixels = [0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0];
        (
            idx(IMAGES_MAGIC, &[3, 2, 2], &pixels),
            idx(LABELS_MAGIC, &[3], &[2, 0, 2]),
        )
    }

    #[test]
    fn parses_raw_pairs_scaling_pixels_to_unit_range() {
        let (images, labels) = pair();
        let d = parse_idx("tiny", &images, &labels).unwrap();
        assert_eq!((d.name.as_str(), d.rows, d.cols), ("tiny", 3, 4));
        assert_eq!(&d.features[..4], &[0.0, 1.0, 0.2, 0.4]);
        assert_eq!(d.features[4], 1.0 / 255.0);
        // Class 1 never occurs, yet the output layer must be 3 wide for label 2.
        assert_eq!(
            d.target,
            Target::Classes {
                labels: vec![2, 0, 2],
                classes: 3
            }
        );
    }

    #[test]
    fn gzip_and_raw_inputs_give_the_same_dataset() {
        let (images, labels) = pair();
        let raw = parse_idx("tiny", &images, &labels).unwrap();
        assert_eq!(
            parse_idx("tiny", &gzip(&images), &gzip(&labels)).unwrap(),
            raw
        );
        assert_eq!(parse_idx("tiny", &gzip(&images), &labels).unwrap(), raw);
        // Concatenated gzip members are one stream.
        let (head, tail) = images.split_at(7);
        let multi = [gzip(head), gzip(tail)].concat();
        assert_eq!(parse_idx("tiny", &multi, &labels).unwrap(), raw);
    }

    #[test]
    fn wrong_magic_says_what_was_found_and_expected() {
        let (images, labels) = pair();
        let e = parse_idx("m", b"PK\x03\x04 not idx at all", &labels).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::IdxMagic {
                    found: 0x504b_0304,
                    expected: IMAGES_MAGIC,
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("0x504b0304") && msg.contains("0x00000803"),
            "{msg}"
        );
        assert!(msg.contains("m images"), "{msg}");

        // The two files swapped: each has the other's magic.
        let e = parse_idx("m", &labels, &images).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::IdxMagic {
                    found: LABELS_MAGIC,
                    expected: IMAGES_MAGIC,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("swapped"), "{e}");
    }

    #[test]
    fn non_byte_elements_are_unsupported() {
        let (_, labels) = pair();
        let floats = idx(0x0000_0d03, &[1, 1, 1], &[0; 4]);
        let e = parse_idx("f", &floats, &labels).unwrap_err();
        assert!(
            matches!(e, DatasetError::IdxElementType { code: 0x0d, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("f32"), "{e}");
    }

    #[test]
    fn truncation_reports_expected_and_actual_bytes() {
        let (images, labels) = pair();
        let short = &images[..images.len() - 1];
        let e = parse_idx("t", short, &labels).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::IdxTruncated {
                    expected: 28,
                    actual: 27,
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("28") && msg.contains("27") && msg.contains("truncated"),
            "{msg}"
        );
        // Cut inside the magic and inside the dimensions.
        for (cut, expected) in [(2, 4), (9, 16)] {
            let e = parse_idx("t", &images[..cut], &labels).unwrap_err();
            assert!(
                matches!(e, DatasetError::IdxTruncated { expected: x, actual, .. } if x == expected && actual == cut),
                "{e:?}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let (images, labels) = pair();
        let long = [&labels[..], &[9]].concat();
        let e = parse_idx("t", &images, &long).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::IdxTrailing {
                    expected: 11,
                    actual: 12,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn dimensions_that_overflow_are_refused_without_allocating() {
        let (_, labels) = pair();
        let huge = idx(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[]);
        let e = parse_idx("h", &huge, &labels).unwrap_err();
        assert!(
            matches!(&e, DatasetError::IdxOverflow { dims, .. } if dims == &[u32::MAX; 3]),
            "{e:?}"
        );
        // Large but representable: simply truncated.
        let big = idx(IMAGES_MAGIC, &[1 << 20, 1 << 20, 1], &[]);
        let e = parse_idx("h", &big, &labels).unwrap_err();
        assert!(
            matches!(e, DatasetError::IdxTruncated { actual: 16, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn image_and_label_counts_must_match() {
        let (images, _) = pair();
        let labels = idx(LABELS_MAGIC, &[2], &[0, 1]);
        let e = parse_idx("c", &images, &labels).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::IdxCountMismatch {
                    images: 3,
                    labels: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("3 images") && msg.contains("2 labels"),
            "{msg}"
        );
    }

    #[test]
    fn empty_sets_and_single_classes_are_refused() {
        let e = parse_idx(
            "e",
            &idx(IMAGES_MAGIC, &[0, 2, 2], &[]),
            &idx(LABELS_MAGIC, &[0], &[]),
        )
        .unwrap_err();
        assert!(matches!(e, DatasetError::NoRows { .. }), "{e:?}");
        let e = parse_idx(
            "e",
            &idx(IMAGES_MAGIC, &[2, 0, 2], &[]),
            &idx(LABELS_MAGIC, &[2], &[0, 1]),
        )
        .unwrap_err();
        assert!(matches!(e, DatasetError::NoFeatures { .. }), "{e:?}");
        let (images, _) = pair();
        let e = parse_idx("e", &images, &idx(LABELS_MAGIC, &[3], &[7, 7, 7])).unwrap_err();
        assert!(
            matches!(e, DatasetError::TooFewClasses { distinct: 1, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn gzip_garbage_is_a_gzip_error() {
        let (images, labels) = pair();
        let garbage = [&GZIP_MAGIC[..], b"\x08\x00 this is not deflate data"].concat();
        let e = parse_idx("g", &garbage, &labels).unwrap_err();
        assert!(matches!(e, DatasetError::Gzip { .. }), "{e:?}");
        assert!(e.to_string().contains("g images"), "{e}");

        // A gzip stream cut short, and one with a corrupted checksum.
        let packed = gzip(&images);
        let e = parse_idx("g", &packed[..packed.len() - 6], &labels).unwrap_err();
        assert!(matches!(e, DatasetError::Gzip { .. }), "{e:?}");
        let mut bad_crc = packed.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 0xff;
        let e = parse_idx("g", &bad_crc, &labels).unwrap_err();
        assert!(matches!(e, DatasetError::Gzip { .. }), "{e:?}");
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        let packed = gzip(&[0; 10_000]);
        let e = decompress("z", &packed, 9_999).unwrap_err();
        assert!(
            matches!(e, DatasetError::GzipTooLarge { limit: 9_999, .. }),
            "{e:?}"
        );
        assert_eq!(decompress("z", &packed, 10_000).unwrap().len(), 10_000);
    }

    #[test]
    fn idx_stems_follow_mnist_naming() {
        assert_eq!(
            idx_stem("train-images-idx3-ubyte.gz", IMAGES_SUFFIX),
            Some("train")
        );
        assert_eq!(
            idx_stem("t10k-labels-idx1-ubyte", LABELS_SUFFIX),
            Some("t10k")
        );
        assert_eq!(idx_stem("-images-idx3-ubyte", IMAGES_SUFFIX), None);
        assert_eq!(idx_stem("train-images.idx3", IMAGES_SUFFIX), None);
    }

    #[test]
    fn load_idx_names_the_dataset_and_locates_errors_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = pair();
        let image_path = dir.path().join("tiny-images-idx3-ubyte.gz");
        let label_path = dir.path().join("tiny-labels-idx1-ubyte");
        std::fs::write(&image_path, gzip(&images)).unwrap();
        std::fs::write(&label_path, &labels).unwrap();
        let d = load_idx(&image_path, &label_path).unwrap();
        assert_eq!(d.name, "tiny");
        assert_eq!(d, parse_idx("tiny", &images, &labels).unwrap());

        std::fs::write(&label_path, &labels[..9]).unwrap();
        let e = load_idx(&image_path, &label_path).unwrap_err();
        assert!(e.to_string().contains("tiny-labels-idx1-ubyte"), "{e}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let (images, labels) = pair();
        let mut rng = Rng::new(5);
        for round in 0..20_000 {
            // Mutate a valid pair (flip bytes, cut, extend) or draw pure noise.
            let mut mutate = |valid: &[u8]| -> Vec<u8> {
                let mut bytes = if round % 4 == 0 {
                    (0..rng.next_u64() % 40)
                        .map(|_| rng.next_u64() as u8)
                        .collect()
                } else {
                    valid.to_vec()
                };
                for _ in 0..rng.next_u64() % 3 {
                    if !bytes.is_empty() {
                        let at = (rng.next_u64() % bytes.len() as u64) as usize;
                        bytes[at] = rng.next_u64() as u8;
                    }
                }
                if rng.next_u64().is_multiple_of(2) {
                    bytes.truncate((rng.next_u64() % (bytes.len() as u64 + 1)) as usize);
                }
                bytes
            };
            let (i, l) = (mutate(&images), mutate(&labels));
            let (i, l) = if round % 3 == 0 {
                (gzip(&i), gzip(&l))
            } else {
                (i, l)
            };
            if let Ok(d) = parse_idx("fuzz", &i, &l) {
                assert_eq!(d.features.len(), d.rows * d.cols);
                assert!(d.features.iter().all(|p| (0.0..=1.0).contains(p)));
            }
        }
    }
}
