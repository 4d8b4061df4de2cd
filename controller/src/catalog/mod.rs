//! The script catalog on disk: loading a `NAME.toml` manifest and its body into a
//! [`CatalogEntry`] (`manifest.rs`), and signing / verifying entries with the
//! controller's script key (here).

use std::fmt;
use std::path::PathBuf;

use deskside_proto::msg::script::{CatalogEntry, ParamError, signing_bytes};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use sha2::{Digest, Sha256};

mod manifest;

pub use manifest::{MAX_MANIFEST_BYTES, load};

/// The script key's type, re-exported so callers of [`sign`] need not name ed25519-dalek.
pub use ed25519_dalek::SigningKey;

/// Why a manifest, its body or a signature is refused. Each names the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    #[error("{}: cannot read {what}: {source}", .path.display())]
    Read {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{}: {what} is over {limit} bytes; catalog files must stay small", .path.display())]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        limit: usize,
    },
    #[error("{}: {what} is not valid UTF-8", .path.display())]
    NotUtf8 { path: PathBuf, what: &'static str },
    #[error("{}: {location}{message}", .path.display())]
    Syntax {
        path: PathBuf,
        location: Location,
        message: String,
    },
    #[error("{}: key `{key}`: {reason}", .path.display())]
    Key {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error("{}: parameter {param:?}: {reason}", .path.display())]
    Param {
        path: PathBuf,
        param: String,
        reason: String,
    },
    #[error("{}: {source}", .path.display())]
    Manifest { path: PathBuf, source: ParamError },
    #[error(
        "script {name}: the body does not match the signed hash (expected {expected}, got {actual})"
    )]
    BodyChanged {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("script {name}: {reason}")]
    BadSignature { name: String, reason: String },
}

/// Where in a manifest a syntax error is, shown as `line N: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location(pub(crate) Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, "line {line}: "),
            None => Ok(()),
        }
    }
}

/// The controller's ed25519 signature over [`signing_bytes`] of `entry`.
pub fn sign(entry: &CatalogEntry, key: &SigningKey) -> Vec<u8> {
    key.sign(&signing_bytes(entry)).to_bytes().to_vec()
}

/// Checks that `body` is the one `entry` was hashed over and that `signature` is the
/// script key's signature over the entry.
pub fn verify(
    entry: &CatalogEntry,
    body: &str,
    signature: &[u8],
    public_key: &[u8; 32],
) -> Result<(), CatalogError> {
    let bad = |reason: String| CatalogError::BadSignature {
        name: entry.name.clone(),
        reason,
    };
    let actual: [u8; 32] = Sha256::digest(body.as_bytes()).into();
    if actual != entry.body_sha256 {
        return Err(CatalogError::BodyChanged {
            name: entry.name.clone(),
            expected: hex::encode(entry.body_sha256),
            actual: hex::encode(actual),
        });
    }
    let key = VerifyingKey::from_bytes(public_key)
        .map_err(|e| bad(format!("the script public key is unusable: {e}")))?;
    let signature = Signature::from_slice(signature).map_err(|_| {
        bad(format!(
            "the signature is {} bytes, not 64",
            signature.len()
        ))
    })?;
    key.verify_strict(&signing_bytes(entry), &signature)
        .map_err(|_| bad("the signature does not verify with the controller's script key".into()))
}

#[cfg(test)]
mod tests;
