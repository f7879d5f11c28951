//! Signing keys on disk. Both kinds are one line of text with a prefix saying which kind it
//! is, so that a secret key handed over where a public one is expected is caught, not used.
//!
//! Secret key file: `secret <64 hex digits of the ed25519 seed>`.
//! Public key file: `key <64 hex digits>`, the same line a bundle's `signature` carries.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::BundleError;

const SECRET_PREFIX: &str = "secret ";
const PUBLIC_PREFIX: &str = "key ";
/// Key files are one short line; anything much longer is not one.
const MAX_KEY_FILE: u64 = 1024;

/// A fresh key pair from the operating system's random number generator.
pub fn generate_keypair() -> Result<(SigningKey, VerifyingKey), BundleError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| BundleError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let public = key.verifying_key();
    Ok((key, public))
}

/// The form keys take in messages and on the command line.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Writes a secret key readable by its owner only (mode 0600 on Unix). An existing file is
/// never replaced: losing a signing key cannot be undone.
pub fn write_secret_key(path: &Path, key: &SigningKey) -> Result<(), BundleError> {
    let text = format!("{SECRET_PREFIX}{}\n", hex::encode(key.as_bytes()));
    write_new(path, text.as_bytes(), 0o600)
}

/// Writes a public key as `key <hex>`. Refuses to replace an existing file, like
/// [`write_secret_key`], so that `keygen` never half-replaces a pair.
pub fn write_public_key(path: &Path, key: &VerifyingKey) -> Result<(), BundleError> {
    let text = format!("{PUBLIC_PREFIX}{}\n", public_key_hex(key));
    write_new(path, text.as_bytes(), 0o644)
}

pub fn read_secret_key(path: &Path) -> Result<SigningKey, BundleError> {
    let text = read_key_file(path)?;
    let bad = |detail: &str| BundleError::BadKey {
        what: path.display().to_string(),
        detail: detail.to_owned(),
    };
    let line = text.trim_end_matches(['\n', '\r']);
    if line.starts_with(PUBLIC_PREFIX) {
        return Err(bad(
            "this is a public key; signing needs the secret key file written by keygen",
        ));
    }
    let hex_part = line.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        bad("not a hypoforge secret key file (expected `secret <64 hex digits>`)")
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut seed).map_err(|_| bad("the key is not 64 hex digits"))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// Reads a public key file: `key <hex>` or a bare hex key.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, BundleError> {
    let text = read_key_file(path)?;
    parse_key_text(&text).map_err(|detail| BundleError::BadKey {
        what: path.display().to_string(),
        detail,
    })
}

/// Parses a public key given as text (a command-line argument, say): `key <hex>` or bare hex.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, BundleError> {
    parse_key_text(text).map_err(|detail| BundleError::BadKey {
        what: format!("public key {:?}", text.trim()),
        detail,
    })
}

fn parse_key_text(text: &str) -> Result<VerifyingKey, String> {
    let line = text.trim();
    if line.starts_with(SECRET_PREFIX.trim_end()) {
        return Err(
            "this is a secret key; keep it private and use the matching public key here".into(),
        );
    }
    key_from_hex(line.strip_prefix(PUBLIC_PREFIX).unwrap_or(line).trim())
}

/// A public key from exactly 64 hex digits that name a valid curve point.
pub(crate) fn key_from_hex(hex_part: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut bytes)
        .map_err(|_| "a public key is 64 hex digits".to_owned())?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "those 64 hex digits are not a valid ed25519 public key".to_owned())?;
    // Weak keys verify forged signatures; no real key generator makes one.
    if key.is_weak() {
        return Err("this is a weak ed25519 key, which cannot be trusted".into());
    }
    Ok(key)
}

fn read_key_file(path: &Path) -> Result<String, BundleError> {
    let io_error = |source| BundleError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    File::open(path)
        .map_err(io_error)?
        .take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(io_error)?;
    Ok(text)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), BundleError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Set at creation, so there is no moment when the secret is readable by others.
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            BundleError::KeyExists {
                path: path.to_owned(),
            }
        } else {
            BundleError::Io {
                action: "create",
                path: path.to_owned(),
                source,
            }
        }
    })?;
    if let Err(source) = file.write_all(contents).and_then(|()| file.sync_all()) {
        drop(file);
        // A half-written key is worse than none: the next keygen would refuse to replace it.
        let _ = std::fs::remove_file(path);
        return Err(BundleError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (secret, public) = generate_keypair().expect("keypair");
        let secret_path = dir.path().join("bundle.key");
        let public_path = dir.path().join("bundle.pub");
        write_secret_key(&secret_path, &secret).expect("write secret");
        write_public_key(&public_path, &public).expect("write public");
        let read_back = read_secret_key(&secret_path).expect("read secret");
        assert_eq!(read_back.to_bytes(), secret.to_bytes());
        assert_eq!(read_public_key(&public_path).expect("read public"), public);
        assert_eq!(
            parse_public_key(&public_key_hex(&public)).expect("bare hex"),
            public
        );
        assert_eq!(
            parse_public_key(&format!("key {}\n", public_key_hex(&public))).expect("key line"),
            public
        );
    }

    #[cfg(unix)]
    #[test]
    fn secret_key_is_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bundle.key");
        let (first, _) = generate_keypair().expect("keypair");
        let (second, _) = generate_keypair().expect("keypair");
        write_secret_key(&path, &first).expect("write secret");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = write_secret_key(&path, &second).expect_err("must not overwrite");
        assert!(matches!(err, BundleError::KeyExists { .. }), "{err}");
        assert_eq!(
            read_secret_key(&path).expect("read secret").to_bytes(),
            first.to_bytes()
        );
    }

    #[test]
    fn keys_of_the_wrong_kind_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (secret, public) = generate_keypair().expect("keypair");
        let secret_path = dir.path().join("bundle.key");
        let public_path = dir.path().join("bundle.pub");
        write_secret_key(&secret_path, &secret).expect("write secret");
        write_public_key(&public_path, &public).expect("write public");
        let err = read_public_key(&secret_path).expect_err("secret as public");
        assert!(err.to_string().contains("secret key"), "{err}");
        let err = read_secret_key(&public_path).expect_err("public as secret");
        assert!(err.to_string().contains("public key"), "{err}");
        let err = parse_public_key("abc").expect_err("short hex");
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}
