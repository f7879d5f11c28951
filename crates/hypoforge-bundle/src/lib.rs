//! Plugin bundles: one tar+zstd file carrying a manifest, the sources and compiled modules of
//! some hypotheses, a checksum list and an optional ed25519 signature, so that results can be
//! shared and reproduced elsewhere.
//!
//! A bundle comes from strangers, so [`open`] treats it as hostile: it reads everything into
//! memory under hard limits, refuses anything outside the fixed layout and checks every hash
//! before anything is returned. It never writes to disk; extraction is the caller's job, from
//! [`Bundle::files`], after [`verify`] has applied the caller's trust policy.
//!
//! Layout (format 1), regular files only:
//! `manifest.toml`, `SHA256SUMS` (`<hex sha256>  <path>` for every other file except
//! `signature`, sorted by path), `sources/<name>.rs` and `wasm/<name>.wasm` per component, and
//! an optional `signature` (hex ed25519 signature over `manifest.toml` followed by
//! `SHA256SUMS`, then a line `key <hex public key>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use hypoforge_spec::ComponentKind;

mod archive;
mod check;
mod keys;

pub use keys::{
    generate_keypair, parse_public_key, public_key_hex, read_public_key, read_secret_key,
    write_public_key, write_secret_key,
};

/// The only layout this crate reads and writes; a newer one is refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// Fixed file names inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.toml";
pub const SUMS_FILE: &str = "SHA256SUMS";
pub const SIGNATURE_FILE: &str = "signature";

/// `manifest.toml`: what the bundle holds and where each piece came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The tool that packed it, for whoever has to debug an odd bundle.
    pub created_by: String,
    #[serde(rename = "component", default)]
    pub components: Vec<ComponentEntry>,
}

/// One hypothesis in a bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    pub kind: ComponentKind,
    /// File stem and display name, `[a-z0-9_]{1,64}`, unique in the bundle.
    pub name: String,
    /// Always `sources/<name>.rs`; [`pack`] fills it in.
    pub source: String,
    /// Always `wasm/<name>.wasm`; [`pack`] fills it in.
    pub wasm: String,
    /// The hypothesis identity (hex SHA-256 of the source), so that a store can tell a
    /// bundled hypothesis from one it already has. [`pack`] fills it in when empty.
    pub source_sha256: String,
    pub abi_version: u32,
    pub sdk_version: String,
    /// Free-form origin notes (generator, strategy, model, prompt, idea, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RecordedMetrics>,
}

impl ComponentEntry {
    /// An entry whose paths and hash [`pack`] fills in.
    pub fn new(kind: ComponentKind, name: &str, abi_version: u32, sdk_version: &str) -> Self {
        ComponentEntry {
            kind,
            name: name.to_owned(),
            source: String::new(),
            wasm: String::new(),
            source_sha256: String::new(),
            abi_version,
            sdk_version: sdk_version.to_owned(),
            provenance: BTreeMap::new(),
            metrics: None,
        }
    }

    /// The archive path of this component's source, derived from its name.
    pub fn source_path(&self) -> String {
        format!("sources/{}.rs", self.name)
    }

    /// The archive path of this component's module, derived from its name.
    pub fn wasm_path(&self) -> String {
        format!("wasm/{}.wasm", self.name)
    }
}

/// Results recorded at packing time, with the protocol they were measured under, so that a
/// reproduction can be compared like for like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedMetrics {
    pub suite: String,
    pub seeds: u64,
    pub trials: usize,
    pub b_wr: f64,
    pub b_wr_ci: [f64; 2],
    pub bsota_wr: f64,
    pub bsota_wr_ci: [f64; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_val_loss: Option<f64>,
    pub protocol: String,
}

/// What goes into a new bundle.
#[derive(Clone, Debug)]
pub struct NewComponent {
    /// `source`, `wasm` and (when empty) `source_sha256` are filled in by [`pack`].
    pub entry: ComponentEntry,
    pub source: Vec<u8>,
    pub wasm: Vec<u8>,
}

/// A bundle read by [`open`]: every check has passed, and nothing has touched the disk.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    /// Every file of the archive by its path, the fixed ones included.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The key whose signature checked out, if the bundle is signed. Whether that key is
    /// trusted is [`verify`]'s question.
    pub signed_by: Option<VerifyingKey>,
}

impl Bundle {
    /// The source and module of one component, or `None` if this bundle lacks them (only
    /// possible for a `Bundle` built or changed by hand).
    pub fn component_files(&self, entry: &ComponentEntry) -> Option<(&[u8], &[u8])> {
        let source = self.files.get(&entry.source_path())?;
        let wasm = self.files.get(&entry.wasm_path())?;
        Some((source, wasm))
    }
}

/// Caps on what [`open`] will read, so that a hostile bundle costs bounded memory and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// The bundle file itself.
    pub max_compressed: u64,
    /// The decompressed tar stream, headers and padding included.
    pub max_unpacked: u64,
    /// Archive entries of any kind.
    pub max_files: usize,
    /// Any one file.
    pub max_file: u64,
}

impl Default for ReadLimits {
    /// Far above any real bundle (plugins are tens of kilobytes) and far below harm.
    fn default() -> Self {
        ReadLimits {
            max_compressed: 64 << 20,
            max_unpacked: 256 << 20,
            max_files: 10_000,
            max_file: 16 << 20,
        }
    }
}

/// Whose signatures [`verify`] accepts.
#[derive(Clone, Copy, Debug)]
pub enum Trust<'a> {
    /// Unsigned bundles pass; a signature, if present, must still be valid.
    Any,
    /// The bundle must be signed by one of these keys.
    RequireSignature { trusted: &'a [VerifyingKey] },
}

/// What [`verify`] established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The signer, whose signature is valid (and, under [`Trust::RequireSignature`], trusted).
    pub signed_by: Option<VerifyingKey>,
    pub components: usize,
    pub files: usize,
}

/// Why a bundle or key could not be written, read or trusted. Each message names the file or
/// archive entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is {size} bytes, more than the {limit}-byte limit for a bundle", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{}: the bundle is truncated or not a hypoforge bundle ({detail})", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{}: the bundle unpacks to more than {limit} bytes; refusing it as a possible decompression bomb",
        path.display()
    )]
    UnpackedTooLarge { path: PathBuf, limit: u64 },
    #[error("{}: the bundle has more than {limit} entries", path.display())]
    TooManyFiles { path: PathBuf, limit: usize },
    #[error("bundle entry {entry:?} is {size} bytes, more than the {limit}-byte limit per file")]
    FileTooLarge {
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error("bundle entry {entry:?} has an unsafe path ({reason}); refusing the bundle")]
    UnsafePath { entry: String, reason: &'static str },
    #[error("bundle entry {entry:?} is a {kind}; bundles may only contain regular files")]
    NotRegularFile { entry: String, kind: String },
    #[error(
        "bundle entry {entry:?} is not part of the bundle format (allowed: manifest.toml, SHA256SUMS, signature, sources/<name>.rs, wasm/<name>.wasm with <name> in [a-z0-9_]{{1,64}})"
    )]
    UnexpectedPath { entry: String },
    #[error("bundle entry {entry:?} appears twice in the archive")]
    DuplicateEntry { entry: String },
    #[error("the bundle has no {file}")]
    MissingFile { file: &'static str },
    #[error("manifest.toml is invalid: {detail}")]
    ManifestInvalid { detail: String },
    #[error(
        "manifest.toml has format version {found}, which is newer than this hypoforge understands ({FORMAT_VERSION}); update hypoforge"
    )]
    UnsupportedFormat { found: i64 },
    #[error("component {name:?}: {detail}")]
    InvalidComponent { name: String, detail: String },
    #[error("manifest names {path} (component {component:?}), which the bundle does not contain")]
    MissingComponentFile { component: String, path: String },
    #[error("the bundle contains {path}, which manifest.toml does not name")]
    UnlistedFile { path: String },
    #[error("SHA256SUMS line {line} is malformed: {detail}")]
    SumsMalformed { line: usize, detail: String },
    #[error("SHA256SUMS does not list {path}, which the bundle contains")]
    SumsMissing { path: String },
    #[error("SHA256SUMS lists {path}, which the bundle does not contain")]
    SumsExtra { path: String },
    #[error("hash mismatch for {path}: the file was changed after packing")]
    HashMismatch { path: String },
    #[error(
        "component {component:?}: source_sha256 in manifest.toml is not the SHA-256 of {path}, so the recorded hypothesis identity is wrong"
    )]
    SourceHashMismatch { component: String, path: String },
    #[error("the bundle's signature file is malformed: {detail}")]
    SignatureMalformed { detail: String },
    #[error(
        "the bundle's signature (by key {key}) does not match its manifest.toml and SHA256SUMS: the bundle was changed after signing"
    )]
    BadSignature { key: String },
    #[error("the bundle is not signed, and a signature by a trusted key is required")]
    Unsigned,
    #[error("the bundle is signed by {key}, which is not among the trusted keys")]
    UntrustedKey { key: String },
    #[error("{}: a secret key is already there; refusing to overwrite it", path.display())]
    KeyExists { path: PathBuf },
    #[error("{what}: {detail}")]
    BadKey { what: String, detail: String },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// Writes a bundle of `components` to `out`, signed when a key is given.
///
/// The file appears atomically (temp file in the same directory, then rename), replacing any
/// file already at `out`, so a crash never leaves half a bundle. Paths and, when empty,
/// `source_sha256` are filled in; a bundle [`open`] would refuse under the default limits is
/// refused here instead.
pub fn pack(
    components: &[NewComponent],
    created_by: &str,
    signing_key: Option<&SigningKey>,
    out: &Path,
) -> Result<(), BundleError> {
    let files = check::assemble(components, created_by, signing_key)?;
    archive::write(&files, out, ReadLimits::default())
}

/// Reads and checks a bundle entirely in memory, under `limits`.
///
/// Everything but the trust policy is checked: layout, manifest, checksums, hypothesis
/// identities, and the signature if there is one. Call [`verify`] before installing anything.
pub fn open(path: &Path, limits: ReadLimits) -> Result<Bundle, BundleError> {
    let files = archive::read(path, limits)?;
    let checked = check::check(&files)?;
    Ok(Bundle {
        manifest: checked.manifest,
        files,
        signed_by: checked.signed_by,
    })
}

/// Re-checks `bundle.files` from scratch (so that a `Bundle` built or edited by hand gets no
/// pass) and applies `trust`.
pub fn verify(bundle: &Bundle, trust: Trust<'_>) -> Result<VerifyReport, BundleError> {
    let checked = check::check(&bundle.files)?;
    if let Trust::RequireSignature { trusted } = trust {
        match &checked.signed_by {
            None => return Err(BundleError::Unsigned),
            Some(key) if !trusted.contains(key) => {
                return Err(BundleError::UntrustedKey {
                    key: public_key_hex(key),
                });
            }
            Some(_) => {}
        }
    }
    Ok(VerifyReport {
        signed_by: checked.signed_by,
        components: checked.manifest.components.len(),
        files: bundle.files.len(),
    })
}
