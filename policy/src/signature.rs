//! Signed bundles: ed25519 over a policy's canonical bytes, so only a
//! policy someone holding a trusted key approved reaches the kernel, and
//! reformatting a signed policy does not break its signature while any
//! change of meaning does.
//!
//! Files: a key pair is `NAME.key` (hex seed, 0600) and `NAME.pub` (hex
//! public key); a trust store is a directory of `*.pub`; a signature is a
//! detached JSON file (`<policy>.sig`, or `bundle.sig` in a policy
//! directory) naming the key by fingerprint.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::source::signature_path;
use crate::Rejection;

/// Which key signed: its fingerprint (the first 16 hex digits of the
/// SHA-256 of the public key) and, once found in a trust store, the file
/// name it is trusted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId {
    pub fingerprint: String,
    pub name: Option<String>,
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} ({})", self.fingerprint),
            None => f.write_str(&self.fingerprint),
        }
    }
}

/// Why a key could not be made or used, or a policy not signed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a key file (expected 64 hex digits)")]
    Malformed { path: PathBuf },
    #[error("{0}")]
    Policy(crate::Problems),
}

/// The fingerprint of a public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let mut id = hex(&Sha256::digest(key.as_bytes()));
    id.truncate(16);
    id
}

/// Writes `PREFIX.key` (0600, refusing to overwrite) and `PREFIX.pub`
/// from 32 bytes of /dev/urandom.
pub fn generate_key(prefix: &Path) -> Result<KeyId, KeyError> {
    let mut seed = [0u8; 32];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom)
        .and_then(|mut file| file.read_exact(&mut seed))
        .map_err(|source| KeyError::Io { path: urandom.to_path_buf(), source })?;
    let signing = SigningKey::from_bytes(&seed);
    let public = signing.verifying_key();
    let key_path = with_suffix(prefix, ".key");
    let pub_path = with_suffix(prefix, ".pub");
    write_new(&key_path, &format!("{}\n", hex(&seed)), 0o600)?;
    write_new(&pub_path, &format!("{}\n", hex(public.as_bytes())), 0o644)?;
    Ok(KeyId { fingerprint: fingerprint(&public), name: None })
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|source| KeyError::Io { path: path.to_path_buf(), source })
}

fn read_hex<const N: usize>(path: &Path) -> Result<[u8; N], KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
    unhex(text.trim())
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
        .ok_or_else(|| KeyError::Malformed { path: path.to_path_buf() })
}

/// Signs the policy at `policy` (file or directory) with the key file
/// `key`, writing the detached signature next to it. The policy must
/// parse (its canonical bytes are what is signed); it need not pass this
/// host's validation, which depends on where it is applied.
pub fn sign(policy: &Path, key: &Path) -> Result<(PathBuf, KeyId), KeyError> {
    let seed: [u8; 32] = read_hex(key)?;
    let signing = SigningKey::from_bytes(&seed);
    let files = crate::read_sources(policy).map_err(KeyError::Policy)?;
    let (parsed, problems) = crate::parse_files(&files);
    if !problems.is_empty() {
        return Err(KeyError::Policy(crate::Problems::sorted(problems)));
    }
    let canonical = crate::canonical::canonical(&parsed);
    let signature = signing.sign(canonical.as_bytes());
    let public = signing.verifying_key();
    let id = KeyId { fingerprint: fingerprint(&public), name: None };
    let document = serde_json::json!({
        "key_id": id.fingerprint,
        "signature": hex(&signature.to_bytes()),
        "digest": crate::compile::digest(&canonical),
    });
    let path = signature_path(policy);
    std::fs::write(&path, format!("{document}\n")).map_err(|source| KeyError::Io { path: path.clone(), source })?;
    Ok((path, id))
}

/// Whether the policy at `policy` carries a valid signature by a key in
/// `trust_dir`.
pub fn verify(policy: &Path, trust_dir: &Path) -> Result<KeyId, Rejection> {
    let files =
        crate::read_sources(policy).map_err(|problems| Rejection::Unreadable { reason: problems.to_string() })?;
    let (parsed, problems) = crate::parse_files(&files);
    if !problems.is_empty() {
        return Err(Rejection::Invalid(crate::Problems::sorted(problems)));
    }
    verify_canonical(&crate::canonical::canonical(&parsed), &signature_path(policy), trust_dir)
}

/// Checks the signature at `sig_path` over `canonical`.
pub fn verify_canonical(canonical: &str, sig_path: &Path, trust_dir: &Path) -> Result<KeyId, Rejection> {
    let text = match std::fs::read_to_string(sig_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Rejection::Unsigned { expected: sig_path.to_path_buf() })
        }
        Err(error) => return Err(Rejection::Unreadable { reason: format!("{}: {error}", sig_path.display()) }),
    };
    let malformed = || Rejection::Unreadable {
        reason: format!("{}: not a signature file (JSON with `key_id` and `signature`)", sig_path.display()),
    };
    let document: serde_json::Value = serde_json::from_str(&text).map_err(|_| malformed())?;
    let key_id = document["key_id"].as_str().ok_or_else(malformed)?;
    let signature = document["signature"]
        .as_str()
        .and_then(unhex)
        .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        .map(|bytes| Signature::from_bytes(&bytes))
        .ok_or_else(malformed)?;
    let trusted = trust_store(trust_dir)?;
    let Some((name, key)) = trusted.into_iter().find(|(_, key)| fingerprint(key) == key_id) else {
        return Err(Rejection::UnknownKey { key_id: key_id.chars().take(64).collect() });
    };
    let id = KeyId { fingerprint: key_id.to_owned(), name: Some(name) };
    key.verify_strict(canonical.as_bytes(), &signature).map_err(|_| Rejection::BadSignature { key: id.to_string() })?;
    Ok(id)
}

/// Every readable `*.pub` in `dir`, by file stem. A malformed key file is
/// skipped with a warning: one bad file must not distrust the others.
fn trust_store(dir: &Path) -> Result<Vec<(String, VerifyingKey)>, Rejection> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| Rejection::Unreadable { reason: format!("trust store {}: {error}", dir.display()) })?;
    let mut keys = Vec::new();
    let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    paths.sort();
    for path in paths {
        if path.extension().is_none_or(|ext| ext != "pub") {
            continue;
        }
        let name = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        match read_hex::<32>(&path).ok().and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok()) {
            Some(key) => keys.push((name, key)),
            None => tracing::warn!(path = %path.display(), "trust store: not a public key (64 hex digits); skipped"),
        }
    }
    Ok(keys)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// Hex (either case) to bytes; `None` on anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks_exact(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00AB10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }
}
