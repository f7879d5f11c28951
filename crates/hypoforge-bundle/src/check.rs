//! The content rules of a bundle, shared by [`crate::pack`] (which checks its own output) and
//! [`crate::open`]/[`crate::verify`], so that the writer and the reader cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hypoforge_spec::source_hash;

use crate::{
    BundleError, ComponentEntry, FORMAT_VERSION, MANIFEST_FILE, Manifest, NewComponent,
    SIGNATURE_FILE, SUMS_FILE, public_key_hex,
};

/// Component names double as file stems, so they must be safe as path components everywhere.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `path` is one of the file paths the format allows.
pub(crate) fn allowed_path(path: &str) -> bool {
    if matches!(path, MANIFEST_FILE | SUMS_FILE | SIGNATURE_FILE) {
        return true;
    }
    let stem = path
        .strip_prefix("sources/")
        .and_then(|rest| rest.strip_suffix(".rs"))
        .or_else(|| {
            path.strip_prefix("wasm/")
                .and_then(|rest| rest.strip_suffix(".wasm"))
        });
    stem.is_some_and(valid_name)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a successful check yields.
pub(crate) struct Checked {
    pub manifest: Manifest,
    pub signed_by: Option<VerifyingKey>,
}

/// The bytes a signature covers: the manifest, then the sums (which cover every other file).
fn signed_message(manifest: &[u8], sums: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(manifest.len() + sums.len());
    message.extend_from_slice(manifest);
    message.extend_from_slice(sums);
    message
}

/// Builds every file of a new bundle, checked as [`open`](crate::open) would check it.
pub(crate) fn assemble(
    components: &[NewComponent],
    created_by: &str,
    signing_key: Option<&SigningKey>,
) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    if components.is_empty() {
        return Err(BundleError::ManifestInvalid {
            detail: "a bundle needs at least one component".into(),
        });
    }
    let mut files = BTreeMap::new();
    let mut entries = Vec::with_capacity(components.len());
    for component in components {
        let mut entry = component.entry.clone();
        let invalid = |detail: String| BundleError::InvalidComponent {
            name: component.entry.name.clone(),
            detail,
        };
        if !valid_name(&entry.name) {
            return Err(invalid(
                "the name must be 1 to 64 characters from a-z, 0-9 and _".into(),
            ));
        }
        let hash = source_hash(&component.source);
        if entry.source_sha256.is_empty() {
            entry.source_sha256 = hash;
        } else if entry.source_sha256 != hash {
            return Err(invalid(format!(
                "source_sha256 is {}, but the source given hashes to {hash}",
                entry.source_sha256
            )));
        }
        entry.source = entry.source_path();
        entry.wasm = entry.wasm_path();
        if files
            .insert(entry.source.clone(), component.source.clone())
            .is_some()
        {
            return Err(invalid("another component has the same name".into()));
        }
        files.insert(entry.wasm.clone(), component.wasm.clone());
        entries.push(entry);
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        created_by: created_by.to_owned(),
        components: entries,
    };
    let text = toml::to_string(&manifest).map_err(|e| BundleError::ManifestInvalid {
        detail: format!("cannot be written: {e}"),
    })?;
    files.insert(MANIFEST_FILE.to_owned(), text.into_bytes());

    let mut sums = String::new();
    for (path, bytes) in &files {
        sums.push_str(&source_hash(bytes));
        sums.push_str("  ");
        sums.push_str(path);
        sums.push('\n');
    }
    if let Some(key) = signing_key {
        let signature = key.sign(&signed_message(&files[MANIFEST_FILE], sums.as_bytes()));
        let text = format!(
            "{}\nkey {}\n",
            hex::encode(signature.to_bytes()),
            public_key_hex(&key.verifying_key())
        );
        files.insert(SIGNATURE_FILE.to_owned(), text.into_bytes());
    }
    files.insert(SUMS_FILE.to_owned(), sums.into_bytes());

    check(&files)?;
    Ok(files)
}

/// Every content rule of the format, in the order the errors are most useful: the manifest
/// first (it says what should be there), then the sums, then identities, then the signature.
pub(crate) fn check(files: &BTreeMap<String, Vec<u8>>) -> Result<Checked, BundleError> {
    for path in files.keys() {
        if !allowed_path(path) {
            return Err(BundleError::UnexpectedPath {
                entry: path.clone(),
            });
        }
    }
    let manifest_bytes = files.get(MANIFEST_FILE).ok_or(BundleError::MissingFile {
        file: MANIFEST_FILE,
    })?;
    let manifest = parse_manifest(manifest_bytes)?;
    check_components(&manifest, files)?;

    let sums_bytes = files
        .get(SUMS_FILE)
        .ok_or(BundleError::MissingFile { file: SUMS_FILE })?;
    check_sums(sums_bytes, files)?;

    for entry in &manifest.components {
        let source = files
            .get(&entry.source)
            .ok_or_else(|| BundleError::MissingComponentFile {
                component: entry.name.clone(),
                path: entry.source.clone(),
            })?;
        if source_hash(source) != entry.source_sha256 {
            return Err(BundleError::SourceHashMismatch {
                component: entry.name.clone(),
                path: entry.source.clone(),
            });
        }
    }

    let signed_by = match files.get(SIGNATURE_FILE) {
        None => None,
        Some(signature) => Some(check_signature(signature, manifest_bytes, sums_bytes)?),
    };
    Ok(Checked {
        manifest,
        signed_by,
    })
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BundleError> {
    let invalid = |detail: String| BundleError::ManifestInvalid { detail };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8".into()))?;
    // The version is read on its own first: a newer format may add keys, and "update
    // hypoforge" is the useful answer then, not "unknown field".
    let table: toml::Table = text.parse().map_err(|e| invalid(shown(&e)))?;
    match table.get("format") {
        Some(toml::Value::Integer(found)) if *found > i64::from(FORMAT_VERSION) => {
            return Err(BundleError::UnsupportedFormat { found: *found });
        }
        Some(toml::Value::Integer(found)) if *found != i64::from(FORMAT_VERSION) => {
            return Err(invalid(format!(
                "format = {found}, but the only format there has been is {FORMAT_VERSION}"
            )));
        }
        _ => {}
    }
    let manifest: Manifest = toml::from_str(text).map_err(|e| invalid(shown(&e)))?;
    if manifest.components.is_empty() {
        return Err(invalid("it lists no [[component]]".into()));
    }
    Ok(manifest)
}

/// A parser message fit for a terminal: it quotes the manifest, which a hostile bundle could
/// fill with escape sequences or one enormous line.
fn shown(error: &toml::de::Error) -> String {
    const MAX_LINE: usize = 160;
    const MAX_LINES: usize = 12;
    let text = error.to_string();
    let mut out = String::new();
    for line in text.lines().take(MAX_LINES) {
        if !out.is_empty() {
            out.push('\n');
        }
        for (count, c) in line.chars().enumerate() {
            if count == MAX_LINE {
                out.push_str(" ...");
                break;
            }
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
    }
    out
}

fn check_components(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), BundleError> {
    let mut named = BTreeSet::new();
    for entry in &manifest.components {
        check_entry(entry)?;
        if !named.insert(entry.source.as_str()) {
            return Err(BundleError::InvalidComponent {
                name: entry.name.clone(),
                detail: "manifest.toml lists this name twice".into(),
            });
        }
        named.insert(entry.wasm.as_str());
        for path in [&entry.source, &entry.wasm] {
            if !files.contains_key(path) {
                return Err(BundleError::MissingComponentFile {
                    component: entry.name.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    for path in files.keys() {
        let fixed = matches!(path.as_str(), MANIFEST_FILE | SUMS_FILE | SIGNATURE_FILE);
        if !fixed && !named.contains(path.as_str()) {
            return Err(BundleError::UnlistedFile { path: path.clone() });
        }
    }
    Ok(())
}

fn check_entry(entry: &ComponentEntry) -> Result<(), BundleError> {
    let invalid = |detail: String| BundleError::InvalidComponent {
        name: entry.name.clone(),
        detail,
    };
    if !valid_name(&entry.name) {
        return Err(invalid(
            "the name must be 1 to 64 characters from a-z, 0-9 and _".into(),
        ));
    }
    // Paths follow from the name, so one component can never point at another's files.
    if entry.source != entry.source_path() {
        return Err(invalid(format!(
            "source = {:?}, but it must be {:?}",
            entry.source,
            entry.source_path()
        )));
    }
    if entry.wasm != entry.wasm_path() {
        return Err(invalid(format!(
            "wasm = {:?}, but it must be {:?}",
            entry.wasm,
            entry.wasm_path()
        )));
    }
    if !is_sha256_hex(&entry.source_sha256) {
        return Err(invalid(format!(
            "source_sha256 = {:?} is not 64 lowercase hex digits",
            entry.source_sha256
        )));
    }
    Ok(())
}

fn check_sums(bytes: &[u8], files: &BTreeMap<String, Vec<u8>>) -> Result<(), BundleError> {
    let malformed = |line: usize, detail: &str| BundleError::SumsMalformed {
        line,
        detail: detail.to_owned(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| malformed(1, "the file is not UTF-8"))?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err(malformed(1, "the file does not end with a newline"));
    };
    let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
    let mut previous: Option<&str> = None;
    for (index, line) in body.split('\n').enumerate() {
        let number = index + 1;
        let Some((hash, path)) = line.split_once("  ") else {
            return Err(malformed(number, "expected `<sha256>  <path>`"));
        };
        if !is_sha256_hex(hash) {
            return Err(malformed(number, "the hash is not 64 lowercase hex digits"));
        }
        if !allowed_path(path) || path == SUMS_FILE || path == SIGNATURE_FILE {
            return Err(malformed(
                number,
                &format!("{path:?} is not a file SHA256SUMS may list"),
            ));
        }
        if previous.is_some_and(|p| p >= path) {
            return Err(malformed(
                number,
                "paths are not sorted, or one is listed twice",
            ));
        }
        previous = Some(path);
        listed.insert(path, hash);
    }
    for path in files.keys() {
        let covered = path != SUMS_FILE && path != SIGNATURE_FILE;
        if covered && !listed.contains_key(path.as_str()) {
            return Err(BundleError::SumsMissing { path: path.clone() });
        }
    }
    for (path, hash) in &listed {
        let Some(bytes) = files.get(*path) else {
            return Err(BundleError::SumsExtra {
                path: (*path).to_owned(),
            });
        };
        if source_hash(bytes) != *hash {
            return Err(BundleError::HashMismatch {
                path: (*path).to_owned(),
            });
        }
    }
    Ok(())
}

fn check_signature(
    bytes: &[u8],
    manifest: &[u8],
    sums: &[u8],
) -> Result<VerifyingKey, BundleError> {
    let malformed = |detail: &str| BundleError::SignatureMalformed {
        detail: detail.to_owned(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("it is not UTF-8"))?;
    let mut lines = text.lines();
    let (Some(signature_hex), Some(key_line), None) = (lines.next(), lines.next(), lines.next())
    else {
        return Err(malformed(
            "expected two lines: the signature in hex, then `key <public key in hex>`",
        ));
    };
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut signature)
        .map_err(|_| malformed("the first line is not 128 hex digits"))?;
    let key_hex = key_line
        .strip_prefix("key ")
        .ok_or_else(|| malformed("the second line does not start with `key `"))?;
    let key = crate::keys::key_from_hex(key_hex).map_err(|detail| {
        malformed(&format!("the key on the second line is unusable: {detail}"))
    })?;
    // Strict verification refuses malleable signatures and weak keys, which have no
    // business in a file we produced.
    key.verify_strict(
        &signed_message(manifest, sums),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| BundleError::BadSignature {
        key: public_key_hex(&key),
    })?;
    Ok(key)
}
