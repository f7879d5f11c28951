//! Bundles as files on disk: a round trip, then one hostile or damaged bundle per rule, each
//! refused with its own error and without anything being written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::Signer;
use hypoforge_bundle::{
    Bundle, BundleError, ComponentEntry, ComponentKind, NewComponent, ReadLimits, RecordedMetrics,
    SigningKey, Trust, VerifyingKey, generate_keypair, open, pack, public_key_hex, verify,
};
use hypoforge_spec::source_hash;
use tar::{EntryType, Header};

fn components() -> Vec<NewComponent> {
    let mut swish = ComponentEntry::new(ComponentKind::Activation, "swish_beta", 2, "0.1.0");
    swish
        .provenance
        .insert("generator".into(), "llm:claude".into());
    swish.provenance.insert(
        "idea".into(),
        "x * sigmoid(beta * x), \"beta\" = 1.5".into(),
    );
    swish.metrics = Some(RecordedMetrics {
        suite: "quick".into(),
        seeds: 2,
        trials: 16,
        b_wr: 0.75,
        b_wr_ci: [0.6, 0.9],
        bsota_wr: 0.25,
        bsota_wr_ci: [0.1, 0.5],
        mean_val_loss: Some(0.84),
        protocol: "quick-v1/seeds=2".into(),
    });
    let mut clip = ComponentEntry::new(ComponentKind::Preprocessor, "robust_clip", 2, "0.1.0");
    clip.provenance.insert("strategy".into(), "mutate".into());
    clip.metrics = Some(RecordedMetrics {
        suite: "full".into(),
        seeds: 5,
        trials: 40,
        b_wr: 0.5,
        b_wr_ci: [0.35, 0.65],
        bsota_wr: 0.1,
        bsota_wr_ci: [0.0, 0.3],
        mean_val_loss: None,
        protocol: "full-v1".into(),
    });
    vec![
        NewComponent {
            entry: swish,
            source: b"pub fn f(x: f32) -> f32 { x / (1.0 + (-1.5 * x).exp()) }\n".to_vec(),
            wasm: b"\0asm\x01\0\0\0swish module bytes".to_vec(),
        },
        NewComponent {
            entry: clip,
            source: b"// clip to the 1st..99th percentile\n".to_vec(),
            wasm: b"\0asm\x01\0\0\0clip module bytes".to_vec(),
        },
    ]
}

/// Every path under `dir`, so that a test can show `open` wrote nothing.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in fs::read_dir(&next).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path);
        }
    }
    out
}

/// A temp dir with the bundle one level down, so that `../x` would land inside what we watch.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("bundles")).expect("mkdir");
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("bundles").join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, bytes).expect("write bundle");
        path
    }

    /// Opens `path` expecting a refusal, and checks that nothing appeared or vanished.
    fn refuse(&self, path: &Path, limits: ReadLimits) -> BundleError {
        let before = listing(self.dir.path());
        let err = open(path, limits).expect_err("the bundle must be refused");
        assert_eq!(before, listing(self.dir.path()), "open wrote to disk");
        err
    }

    /// The files of a good, signed bundle, for tests that damage one thing.
    fn good_files(&self, key: &SigningKey) -> BTreeMap<String, Vec<u8>> {
        let path = self.path("good.hfb");
        pack(&components(), "hypoforge 0.1.0", Some(key), &path).expect("pack");
        let bundle = open(&path, ReadLimits::default()).expect("open good bundle");
        fs::remove_file(&path).expect("remove");
        bundle.files
    }
}

fn key() -> (SigningKey, VerifyingKey) {
    generate_keypair().expect("keypair")
}

/// A ustar header whose name is written byte for byte, bypassing the tar crate's own path
/// checks, which would stop the hostile names these tests need.
fn header(name: &[u8], size: u64, kind: EntryType) -> Header {
    let mut header = Header::new_ustar();
    let old = header.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(kind);
    header.set_cksum();
    header
}

fn tar_of(entries: &[(Header, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (header, data) in entries {
        builder.append(header, *data).expect("append");
    }
    builder.into_inner().expect("finish tar")
}

fn tar_of_files(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let entries: Vec<(Header, &[u8])> = files
        .iter()
        .map(|(name, data)| {
            (
                header(name.as_bytes(), data.len() as u64, EntryType::Regular),
                data.as_slice(),
            )
        })
        .collect();
    tar_of(&entries)
}

fn zst(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).expect("compress")
}

/// Recomputes SHA256SUMS and drops the signature, so that only the damage under test remains.
fn reseal(files: &mut BTreeMap<String, Vec<u8>>) {
    files.remove("signature");
    files.remove("SHA256SUMS");
    let sums: String = files
        .iter()
        .map(|(path, bytes)| format!("{}  {path}\n", source_hash(bytes)))
        .collect();
    files.insert("SHA256SUMS".into(), sums.into_bytes());
}

fn edit_manifest(files: &mut BTreeMap<String, Vec<u8>>, edit: impl Fn(&str) -> String) {
    let text = String::from_utf8(files["manifest.toml"].clone()).expect("utf-8 manifest");
    let edited = edit(&text);
    assert_ne!(text, edited, "the edit changed nothing");
    files.insert("manifest.toml".into(), edited.into_bytes());
}

fn limits() -> ReadLimits {
    ReadLimits::default()
}

#[test]
fn round_trip_signed() {
    let scratch = Scratch::new();
    let (secret, public) = key();
    let path = scratch.path("pair.hfb");
    fs::write(&path, b"an older file, replaced atomically").expect("write");
    pack(&components(), "hypoforge 0.1.0", Some(&secret), &path).expect("pack");
    assert_eq!(
        listing(scratch.dir.path()),
        BTreeSet::from([scratch.dir.path().join("bundles"), path.clone()]),
        "pack left a temporary file behind"
    );

    let before = listing(scratch.dir.path());
    let bundle = open(&path, limits()).expect("open");
    assert_eq!(before, listing(scratch.dir.path()));
    assert_eq!(bundle.signed_by, Some(public));
    let report = verify(
        &bundle,
        Trust::RequireSignature {
            trusted: &[key().1, public],
        },
    )
    .expect("verify with the right key");
    assert_eq!(report.signed_by, Some(public));
    assert_eq!(report.components, 2);
    verify(&bundle, Trust::Any).expect("verify, any");

    assert_eq!(bundle.manifest.format, 1);
    assert_eq!(bundle.manifest.created_by, "hypoforge 0.1.0");
    for (packed, entry) in components().iter().zip(&bundle.manifest.components) {
        let mut expected = packed.entry.clone();
        expected.source = format!("sources/{}.rs", expected.name);
        expected.wasm = format!("wasm/{}.wasm", expected.name);
        expected.source_sha256 = source_hash(&packed.source);
        assert_eq!(entry, &expected);
        let (source, wasm) = bundle.component_files(entry).expect("component files");
        assert_eq!(source, packed.source.as_slice());
        assert_eq!(wasm, packed.wasm.as_slice());
    }
    let names: Vec<&str> = bundle.files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "SHA256SUMS",
            "manifest.toml",
            "signature",
            "sources/robust_clip.rs",
            "sources/swish_beta.rs",
            "wasm/robust_clip.wasm",
            "wasm/swish_beta.wasm",
        ]
    );
    let signature = String::from_utf8(bundle.files["signature"].clone()).expect("utf-8");
    assert!(signature.ends_with(&format!("\nkey {}\n", public_key_hex(&public))));

    // Same inputs, same bytes: bundles can be compared and cached by hash.
    let again = scratch.path("again.hfb");
    pack(&components(), "hypoforge 0.1.0", Some(&secret), &again).expect("pack again");
    assert_eq!(
        fs::read(&path).expect("read"),
        fs::read(&again).expect("read")
    );
}

#[test]
fn manifest_reads_as_documented() {
    let scratch = Scratch::new();
    let files = scratch.good_files(&key().0);
    let text = String::from_utf8(files["manifest.toml"].clone()).expect("utf-8");
    for line in [
        "format = 1",
        "created_by = \"hypoforge 0.1.0\"",
        "[[component]]",
        "kind = \"activation\"",
        "name = \"swish_beta\"",
        "source = \"sources/swish_beta.rs\"",
        "wasm = \"wasm/swish_beta.wasm\"",
        "abi_version = 2",
        "[component.provenance]",
        "generator = \"llm:claude\"",
        "[component.metrics]",
        "b_wr_ci = [0.6, 0.9]",
        "mean_val_loss = 0.84",
    ] {
        assert!(text.contains(line), "manifest lacks {line:?}:\n{text}");
    }
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).expect("utf-8");
    let first = sums.lines().next().expect("a line");
    assert_eq!(
        first,
        format!("{}  manifest.toml", source_hash(&files["manifest.toml"]))
    );
}

#[test]
fn unsigned_bundle_passes_only_without_a_trust_requirement() {
    let scratch = Scratch::new();
    let path = scratch.path("unsigned.hfb");
    pack(&components(), "hypoforge 0.1.0", None, &path).expect("pack");
    let bundle = open(&path, limits()).expect("open");
    assert_eq!(bundle.signed_by, None);
    assert!(!bundle.files.contains_key("signature"));
    verify(&bundle, Trust::Any).expect("any");
    let err = verify(
        &bundle,
        Trust::RequireSignature {
            trusted: &[key().1],
        },
    )
    .expect_err("a signature is required");
    assert!(matches!(err, BundleError::Unsigned), "{err}");
    assert!(err.to_string().contains("not signed"), "{err}");
}

#[test]
fn signature_by_an_untrusted_key_is_refused() {
    let scratch = Scratch::new();
    let (secret, public) = key();
    let path = scratch.path("stranger.hfb");
    pack(&components(), "hypoforge 0.1.0", Some(&secret), &path).expect("pack");
    let bundle = open(&path, limits()).expect("open");
    let err = verify(
        &bundle,
        Trust::RequireSignature {
            trusted: &[key().1],
        },
    )
    .expect_err("untrusted signer");
    let message = err.to_string();
    assert!(matches!(err, BundleError::UntrustedKey { .. }), "{message}");
    assert!(message.contains(&public_key_hex(&public)), "{message}");
    assert!(message.contains("not among the trusted keys"), "{message}");
}

#[test]
fn truncated_files_are_refused() {
    let scratch = Scratch::new();
    let path = scratch.path("whole.hfb");
    pack(&components(), "hypoforge 0.1.0", Some(&key().0), &path).expect("pack");
    let whole = fs::read(&path).expect("read");
    for cut in [
        0,
        1,
        4,
        13,
        whole.len() / 3,
        whole.len() / 2,
        whole.len() - 5,
        whole.len() - 1,
    ] {
        let cut_path = scratch.write(&format!("cut_{cut}.hfb"), &whole[..cut]);
        let err = scratch.refuse(&cut_path, limits());
        assert!(
            matches!(err, BundleError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
        assert!(
            err.to_string()
                .contains("truncated or not a hypoforge bundle"),
            "{err}"
        );
    }
}

#[test]
fn not_a_bundle_is_refused() {
    let scratch = Scratch::new();
    let path = scratch.write("notes.hfb", b"format = 1\nthis is plain text, not zstd\n");
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::Corrupt { .. }), "{err}");
    // A valid zstd stream holding no tar at all.
    let path = scratch.write("text.hfb", &zst(b"hello, not a tar archive at all"));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::Corrupt { .. }), "{err}");
}

#[test]
fn any_flipped_byte_is_caught() {
    let scratch = Scratch::new();
    let path = scratch.path("whole.hfb");
    pack(&components(), "hypoforge 0.1.0", Some(&key().0), &path).expect("pack");
    let whole = fs::read(&path).expect("read");
    let original = open(&path, limits()).expect("open").files;
    let damaged = scratch.path("damaged.hfb");
    let mut refused = 0;
    for at in 0..whole.len() {
        let mut bytes = whole.clone();
        bytes[at] ^= 0x20;
        fs::write(&damaged, &bytes).expect("write");
        let before = listing(scratch.dir.path());
        let result = open(&damaged, limits());
        assert_eq!(before, listing(scratch.dir.path()));
        match result {
            Err(_) => refused += 1,
            // zstd's entropy-coded bit streams have a few bits that decode the same either
            // way; such a flip changes nothing, and the frame checksum proves it.
            Ok(bundle) => assert_eq!(bundle.files, original, "a flip at byte {at} went unnoticed"),
        }
    }
    assert!(
        refused * 10 >= whole.len() * 9,
        "only {refused} of {} flips refused",
        whole.len()
    );
    // Past the compressed data: the frame's checksum, which covers the whole tar.
    let mut bytes = whole.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&damaged, &bytes).expect("write");
    let err = scratch.refuse(&damaged, limits());
    assert!(matches!(err, BundleError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("truncated or not a hypoforge bundle"),
        "{err}"
    );
}

#[test]
fn changed_file_with_old_sums_is_a_hash_mismatch() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    files
        .get_mut("wasm/swish_beta.wasm")
        .expect("module")
        .extend_from_slice(b"injected");
    let path = scratch.write("tampered.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::HashMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "hash mismatch for wasm/swish_beta.wasm: the file was changed after packing"
    );
}

#[test]
fn manifest_edited_after_signing_is_a_bad_signature() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    let signature = files["signature"].clone();
    edit_manifest(&mut files, |text| {
        text.replace("b_wr = 0.75", "b_wr = 0.95")
    });
    reseal(&mut files);
    files.insert("signature".into(), signature);
    let path = scratch.write("resigned.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");
    assert!(err.to_string().contains("changed after signing"), "{err}");
}

#[test]
fn signature_by_another_key_than_embedded_is_bad() {
    let scratch = Scratch::new();
    let (secret, _) = key();
    let (_, other_public) = key();
    let mut files = scratch.good_files(&secret);
    let mut message = files["manifest.toml"].clone();
    message.extend_from_slice(&files["SHA256SUMS"]);
    let forged = format!(
        "{}\nkey {}\n",
        hex::encode(secret.sign(&message).to_bytes()),
        public_key_hex(&other_public)
    );
    files.insert("signature".into(), forged.into_bytes());
    let path = scratch.write("forged.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");
    assert!(err.to_string().contains(&public_key_hex(&other_public)));

    files.insert("signature".into(), b"not hex\nkey 00\n".to_vec());
    let path = scratch.write("garbled.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(
        matches!(err, BundleError::SignatureMalformed { .. }),
        "{err}"
    );
}

#[test]
fn unsafe_paths_are_refused() {
    let scratch = Scratch::new();
    let files = scratch.good_files(&key().0);
    let cases: [(&[u8], &str); 5] = [
        (b"../evil.rs", "`..`"),
        (b"sources/../../x", "`..`"),
        (b"/etc/passwd", "absolute"),
        (b"sources\\evil.rs", "backslash"),
        (b"sources/..", "`..`"),
    ];
    for (index, (name, reason)) in cases.into_iter().enumerate() {
        let payload = b"fn main() {}\n";
        let mut entries: Vec<(Header, &[u8])> = vec![(
            header(name, payload.len() as u64, EntryType::Regular),
            payload,
        )];
        for (path, data) in &files {
            entries.push((
                header(path.as_bytes(), data.len() as u64, EntryType::Regular),
                data,
            ));
        }
        let path = scratch.write(&format!("unsafe_{index}.hfb"), &zst(&tar_of(&entries)));
        let err = scratch.refuse(&path, limits());
        assert!(
            matches!(err, BundleError::UnsafePath { .. }),
            "{:?}: {err}",
            String::from_utf8_lossy(name)
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
}

#[test]
fn links_and_devices_are_refused() {
    let scratch = Scratch::new();
    let files = scratch.good_files(&key().0);
    let cases = [
        (EntryType::Symlink, "symbolic link"),
        (EntryType::Link, "hard link"),
        (EntryType::Char, "character device"),
        (EntryType::Fifo, "FIFO"),
        (EntryType::Directory, "directory"),
        (EntryType::XHeader, "PAX extended header"),
    ];
    for (kind, words) in cases {
        let mut link = header(b"sources/swish_beta.rs", 0, kind);
        link.set_link_name_literal(b"/etc/passwd")
            .expect("link name");
        link.set_cksum();
        let mut entries: Vec<(Header, &[u8])> = vec![(link, &[])];
        for (path, data) in files.iter().filter(|(p, _)| *p != "sources/swish_beta.rs") {
            entries.push((
                header(path.as_bytes(), data.len() as u64, EntryType::Regular),
                data,
            ));
        }
        let path = scratch.write("link.hfb", &zst(&tar_of(&entries)));
        let err = scratch.refuse(&path, limits());
        assert!(matches!(err, BundleError::NotRegularFile { .. }), "{err}");
        assert!(err.to_string().contains(words), "{err}");
    }
}

#[test]
fn directory_entries_for_the_two_folders_are_tolerated() {
    let scratch = Scratch::new();
    let files = scratch.good_files(&key().0);
    let mut entries: Vec<(Header, &[u8])> = vec![
        (header(b"sources/", 0, EntryType::Directory), &[]),
        (header(b"wasm/", 0, EntryType::Directory), &[]),
    ];
    for (path, data) in &files {
        entries.push((
            header(path.as_bytes(), data.len() as u64, EntryType::Regular),
            data,
        ));
    }
    let path = scratch.write("dirs.hfb", &zst(&tar_of(&entries)));
    let bundle = open(&path, limits()).expect("folders are fine");
    assert_eq!(bundle.files, files);
}

#[test]
fn duplicate_and_foreign_entries_are_refused() {
    let scratch = Scratch::new();
    let files = scratch.good_files(&key().0);
    let mut entries: Vec<(Header, &[u8])> = Vec::new();
    for (path, data) in &files {
        entries.push((
            header(path.as_bytes(), data.len() as u64, EntryType::Regular),
            data,
        ));
    }
    let module = &files["wasm/swish_beta.wasm"];
    entries.push((
        header(
            b"wasm/swish_beta.wasm",
            module.len() as u64,
            EntryType::Regular,
        ),
        module,
    ));
    let path = scratch.write("dup.hfb", &zst(&tar_of(&entries)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::DuplicateEntry { .. }), "{err}");

    entries.pop();
    entries.push((header(b"README.md", 2, EntryType::Regular), b"hi"));
    let path = scratch.write("foreign.hfb", &zst(&tar_of(&entries)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::UnexpectedPath { .. }), "{err}");
    assert!(err.to_string().contains("README.md"), "{err}");
}

/// A tar, streamed through zstd into a file, whose data is `size` zeros per entry: hundreds of
/// megabytes unpacked, a few kilobytes on disk, and never in memory here.
fn write_zero_bomb(path: &Path, entries: &[(&str, u64)], trailing_zeros: u64) {
    let file = fs::File::create(path).expect("create");
    let encoder = zstd::stream::write::Encoder::new(io::BufWriter::new(file), 1).expect("zstd");
    let mut builder = tar::Builder::new(encoder);
    for (name, size) in entries {
        builder
            .append(
                &header(name.as_bytes(), *size, EntryType::Regular),
                io::repeat(0).take(*size),
            )
            .expect("append zeros");
    }
    let mut encoder = builder.into_inner().expect("finish tar");
    io::copy(&mut io::repeat(0).take(trailing_zeros), &mut encoder).expect("trailing zeros");
    encoder
        .finish()
        .expect("finish zstd")
        .flush()
        .expect("flush");
}

/// The process's peak resident memory, where Linux reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn decompression_bombs_are_stopped_at_the_limits() {
    const MIB: u64 = 1 << 20;
    let scratch = Scratch::new();
    let tight = ReadLimits {
        max_compressed: MIB,
        max_unpacked: 32 * MIB,
        max_files: 100,
        max_file: 16 * MIB,
    };

    // One entry of 300 MiB: refused on its header, before its data is decompressed.
    let path = scratch.path("one_big.hfb");
    write_zero_bomb(&path, &[("wasm/zeros.wasm", 300 * MIB)], 0);
    assert!(fs::metadata(&path).expect("metadata").len() < MIB);
    let err = scratch.refuse(&path, tight);
    assert!(matches!(err, BundleError::FileTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("wasm/zeros.wasm"), "{err}");

    // Many entries under the per-file cap that add up to 300 MiB.
    let names: Vec<String> = (0..75).map(|i| format!("wasm/z{i}.wasm")).collect();
    let entries: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 4 * MIB)).collect();
    let path = scratch.path("many.hfb");
    write_zero_bomb(&path, &entries, 0);
    let err = scratch.refuse(&path, tight);
    assert!(matches!(err, BundleError::UnpackedTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("decompression bomb"), "{err}");

    // A tiny archive followed by 300 MiB of zeros inside the same frame.
    let path = scratch.path("trailer.hfb");
    write_zero_bomb(&path, &[("wasm/a.wasm", 10)], 300 * MIB);
    let err = scratch.refuse(&path, tight);
    assert!(matches!(err, BundleError::UnpackedTooLarge { .. }), "{err}");

    // Entry count.
    let names: Vec<String> = (0..101).map(|i| format!("wasm/n{i}.wasm")).collect();
    let entries: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let path = scratch.path("count.hfb");
    write_zero_bomb(&path, &entries, 0);
    let err = scratch.refuse(&path, tight);
    assert!(matches!(err, BundleError::TooManyFiles { .. }), "{err}");

    // The file itself.
    let err = scratch.refuse(
        &path,
        ReadLimits {
            max_compressed: 16,
            ..tight
        },
    );
    assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");

    // Nothing above held the unpacked data: peak memory stays far below the 300 MiB the
    // bombs expand to (and the other tests running alongside are small).
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 200 * MIB, "peak resident memory {peak} bytes");
    }
}

#[test]
fn newer_format_asks_for_an_update() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    edit_manifest(&mut files, |text| {
        text.replace("format = 1", "format = 2\nhologram = true")
    });
    reseal(&mut files);
    let path = scratch.write("future.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(
        matches!(err, BundleError::UnsupportedFormat { found: 2 }),
        "{err}"
    );
    assert!(
        err.to_string().contains(
            "format version 2, which is newer than this hypoforge understands (1); update hypoforge"
        ),
        "{err}"
    );
}

#[test]
fn manifest_naming_a_missing_file_is_refused() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    files.remove("sources/robust_clip.rs");
    reseal(&mut files);
    let path = scratch.write("missing.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(
        matches!(err, BundleError::MissingComponentFile { .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(
            "manifest names sources/robust_clip.rs (component \"robust_clip\"), which the bundle does not contain"
        ),
        "{err}"
    );
}

#[test]
fn file_the_manifest_does_not_name_is_refused() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    files.insert("wasm/stowaway.wasm".into(), b"\0asm extra".to_vec());
    reseal(&mut files);
    let path = scratch.write("extra.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::UnlistedFile { .. }), "{err}");
    assert!(err.to_string().contains("wasm/stowaway.wasm"), "{err}");
}

#[test]
fn unknown_manifest_key_is_named() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    edit_manifest(&mut files, |text| {
        text.replacen("abi_version = 2", "abi_version = 2\nturbo_mode = true", 1)
    });
    reseal(&mut files);
    let path = scratch.write("unknown_key.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::ManifestInvalid { .. }), "{err}");
    assert!(err.to_string().contains("turbo_mode"), "{err}");
}

#[test]
fn wrong_hypothesis_identity_is_refused() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    let real = source_hash(&files["sources/swish_beta.rs"]);
    let other = source_hash(b"something else");
    edit_manifest(&mut files, |text| text.replace(&real, &other));
    reseal(&mut files);
    let path = scratch.write("identity.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(
        matches!(err, BundleError::SourceHashMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sources/swish_beta.rs"), "{err}");
}

#[test]
fn sums_must_list_exactly_the_files() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    files.remove("signature");
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).expect("utf-8");
    let without_wasm: String = sums
        .lines()
        .filter(|l| !l.ends_with("wasm/robust_clip.wasm"))
        .map(|l| format!("{l}\n"))
        .collect();
    files.insert("SHA256SUMS".into(), without_wasm.into_bytes());
    let path = scratch.write("short_sums.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::SumsMissing { .. }), "{err}");
    assert!(err.to_string().contains("wasm/robust_clip.wasm"), "{err}");

    files.insert("SHA256SUMS".into(), b"not a sums file\n".to_vec());
    let path = scratch.write("bad_sums.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(
        matches!(err, BundleError::SumsMalformed { line: 1, .. }),
        "{err}"
    );
}

#[test]
fn verify_rechecks_a_bundle_changed_in_memory() {
    let scratch = Scratch::new();
    let (secret, public) = key();
    let path = scratch.path("mem.hfb");
    pack(&components(), "hypoforge 0.1.0", Some(&secret), &path).expect("pack");
    let mut bundle: Bundle = open(&path, limits()).expect("open");
    bundle
        .files
        .insert("sources/swish_beta.rs".into(), b"changed".to_vec());
    let err =
        verify(&bundle, Trust::RequireSignature { trusted: &[public] }).expect_err("changed files");
    assert!(matches!(err, BundleError::HashMismatch { .. }), "{err}");
}

#[test]
fn pack_refuses_bad_input() {
    let scratch = Scratch::new();
    let out = scratch.path("bad.hfb");
    let err = pack(&[], "hypoforge 0.1.0", None, &out).expect_err("empty");
    assert!(matches!(err, BundleError::ManifestInvalid { .. }), "{err}");

    let mut bad_name = components();
    bad_name[0].entry.name = "../Swish".into();
    let err = pack(&bad_name, "hypoforge 0.1.0", None, &out).expect_err("bad name");
    assert!(matches!(err, BundleError::InvalidComponent { .. }), "{err}");

    let mut twins = components();
    twins[1].entry.name = twins[0].entry.name.clone();
    let err = pack(&twins, "hypoforge 0.1.0", None, &out).expect_err("same name");
    assert!(err.to_string().contains("same name"), "{err}");

    let mut wrong_hash = components();
    wrong_hash[0].entry.source_sha256 = source_hash(b"other");
    let err = pack(&wrong_hash, "hypoforge 0.1.0", None, &out).expect_err("wrong hash");
    assert!(err.to_string().contains("source_sha256"), "{err}");

    assert_eq!(
        listing(scratch.dir.path()),
        BTreeSet::from([scratch.dir.path().join("bundles")]),
        "a refused pack left files behind"
    );
}

#[test]
fn deeply_nested_manifest_is_refused_without_a_crash() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    edit_manifest(&mut files, |text| {
        format!(
            "{text}\ndeep = {}{}\n",
            "[".repeat(200_000),
            "]".repeat(200_000)
        )
    });
    reseal(&mut files);
    let path = scratch.write("deep.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    assert!(matches!(err, BundleError::ManifestInvalid { .. }), "{err}");
}

#[test]
fn manifest_errors_are_fit_for_a_terminal() {
    let scratch = Scratch::new();
    let mut files = scratch.good_files(&key().0);
    edit_manifest(&mut files, |text| {
        format!("{text}\n\"\u{1b}[31mred\" = {}\n", "x".repeat(100_000))
    });
    reseal(&mut files);
    let path = scratch.write("noisy.hfb", &zst(&tar_of_files(&files)));
    let err = scratch.refuse(&path, limits());
    let message = err.to_string();
    assert!(
        matches!(err, BundleError::ManifestInvalid { .. }),
        "{message}"
    );
    assert!(message.len() < 4000, "{} bytes", message.len());
    assert!(!message.contains('\u{1b}'), "{message}");
}
