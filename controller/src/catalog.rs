//! The script catalog on disk: loading a `NAME.toml` manifest and its body into a
//! [`CatalogEntry`], and signing / verifying entries with the controller's script key.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::script::{
    CatalogEntry, Interpreter, MAX_BODY_BYTES, MAX_PARAM_BYTES, ParamError, ParamKind, ParamSpec,
    signing_bytes,
};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The script key's type, re-exported so callers of [`sign`] need not name ed25519-dalek.
pub use ed25519_dalek::SigningKey;

/// A manifest is a page of TOML; 64 KiB is generous and keeps a stray file from being
/// read whole into memory.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

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
pub struct Location(Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, "line {line}: "),
            None => Ok(()),
        }
    }
}

/// A manifest as written; turned into a [`CatalogEntry`] by [`load`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    version: u32,
    description: String,
    changes: String,
    tier: String,
    interpreter: String,
    os: String,
    timeout_secs: u32,
    body: String,
    #[serde(default)]
    params: Vec<ManifestParam>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestParam {
    name: String,
    description: String,
    #[serde(rename = "type")]
    kind: String,
    pattern: Option<String>,
    max_len: Option<u32>,
    min: Option<i64>,
    max: Option<i64>,
    values: Option<Vec<String>>,
    /// A string, or a TOML integer / boolean for those types.
    default: Option<toml::Value>,
}

/// Reads `manifest_path` and the body it names, checks both, and returns the entry (with
/// `body_sha256` filled in) and the body text.
pub fn load(manifest_path: &Path) -> Result<(CatalogEntry, String), CatalogError> {
    let text = read_bounded(manifest_path, "manifest", MAX_MANIFEST_BYTES)?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| CatalogError::Syntax {
        path: manifest_path.to_owned(),
        location: Location(
            e.span()
                .and_then(|s| text.get(..s.start))
                .map(|before| before.matches('\n').count() + 1),
        ),
        message: e.message().trim_end().to_owned(),
    })?;
    let key_err = |key: &'static str, reason: String| CatalogError::Key {
        path: manifest_path.to_owned(),
        key,
        reason,
    };

    let tier: Tier = manifest
        .tier
        .parse()
        .map_err(|e| key_err("tier", format!("{e}")))?;
    let interpreter = match manifest.interpreter.as_str() {
        "sh" => Interpreter::Sh,
        "bash" => Interpreter::Bash,
        "python3" => Interpreter::Python3,
        other => {
            return Err(key_err(
                "interpreter",
                format!("{other:?} is not one of sh, bash, python3"),
            ));
        }
    };
    if manifest.version == 0 {
        return Err(key_err(
            "version",
            "must be 1 or more; bump it whenever the script changes".into(),
        ));
    }
    if manifest.description.trim().is_empty() {
        return Err(key_err(
            "description",
            "is empty; say what the script is for".into(),
        ));
    }
    if manifest.changes.trim().is_empty() {
        return Err(key_err(
            "changes",
            "is empty; say what the script modifies, or \"Nothing: read-only.\"".into(),
        ));
    }

    let params = manifest
        .params
        .into_iter()
        .map(|p| param_spec(manifest_path, p))
        .collect::<Result<Vec<_>, _>>()?;

    let body_path = body_path(manifest_path, &manifest.body).map_err(|r| key_err("body", r))?;
    let body = read_bounded(&body_path, "script body", MAX_BODY_BYTES)?;
    if body.trim().is_empty() {
        return Err(CatalogError::Key {
            path: body_path,
            key: "body",
            reason: "the script body is empty".into(),
        });
    }

    let entry = CatalogEntry {
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        changes: manifest.changes,
        tier,
        interpreter,
        os: manifest.os,
        timeout_secs: manifest.timeout_secs,
        params,
        body_sha256: Sha256::digest(body.as_bytes()).into(),
    };
    entry.check().map_err(|source| CatalogError::Manifest {
        path: manifest_path.to_owned(),
        source,
    })?;
    Ok((entry, body))
}

/// Builds the typed parameter, refusing keys that do not belong to its `type`.
fn param_spec(path: &Path, p: ManifestParam) -> Result<ParamSpec, CatalogError> {
    let name = p.name.clone();
    let err = |reason: String| CatalogError::Param {
        path: path.to_owned(),
        param: name.clone(),
        reason,
    };
    let present: Vec<&str> = [
        ("pattern", p.pattern.is_some()),
        ("max_len", p.max_len.is_some()),
        ("min", p.min.is_some()),
        ("max", p.max.is_some()),
        ("values", p.values.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    let allowed: &[&str] = match p.kind.as_str() {
        "string" => &["pattern", "max_len"],
        "integer" => &["min", "max"],
        "enum" => &["values"],
        "bool" => &[],
        other => {
            return Err(err(format!(
                "type {other:?} is not one of string, integer, enum, bool"
            )));
        }
    };
    if let Some(stray) = present.iter().find(|k| !allowed.contains(k)) {
        let takes = if allowed.is_empty() {
            "no bounds".to_owned()
        } else {
            allowed.join(", ")
        };
        return Err(err(format!(
            "`{stray}` does not apply to type {:?} (it takes {takes})",
            p.kind
        )));
    }
    let missing = |key: &str| err(format!("type {:?} needs `{key}`", p.kind));
    let kind = match p.kind.as_str() {
        "string" => {
            let pattern = p.pattern.ok_or_else(|| missing("pattern"))?;
            let max_len = p.max_len.ok_or_else(|| missing("max_len"))?;
            if max_len == 0 || max_len as usize > MAX_PARAM_BYTES {
                return Err(err(format!("`max_len` must be 1..={MAX_PARAM_BYTES}")));
            }
            ParamKind::String { pattern, max_len }
        }
        "integer" => ParamKind::Integer {
            min: p.min.ok_or_else(|| missing("min"))?,
            max: p.max.ok_or_else(|| missing("max"))?,
        },
        "enum" => {
            let values = p.values.ok_or_else(|| missing("values"))?;
            if let Some(v) = values
                .iter()
                .find(|v| v.is_empty() || v.chars().any(char::is_control))
            {
                return Err(err(format!(
                    "enum value {v:?} must be non-empty printable text"
                )));
            }
            ParamKind::Enum { values }
        }
        _ => ParamKind::Bool,
    };
    let default = match p.default {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(toml::Value::Integer(n)) => Some(n.to_string()),
        Some(toml::Value::Boolean(b)) => Some(b.to_string()),
        Some(other) => {
            return Err(err(format!(
                "`default` must be a string, integer or boolean, not {}",
                other.type_str()
            )));
        }
    };
    if p.description.trim().is_empty() {
        return Err(err(
            "`description` is empty; say what the value means".into()
        ));
    }
    Ok(ParamSpec {
        name: p.name,
        description: p.description,
        kind,
        default,
    })
}

/// The body path, relative to the manifest's directory and never outside it.
fn body_path(manifest_path: &Path, body: &str) -> Result<PathBuf, String> {
    let rel = Path::new(body);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if body.is_empty() || !plain {
        return Err(format!(
            "{body:?} must be a relative path below the manifest's directory (no `..`, not absolute)"
        ));
    }
    let dir = manifest_path.parent().unwrap_or_else(|| Path::new("."));
    Ok(dir.join(rel))
}

/// Reads at most `limit` bytes of a regular file as UTF-8, refusing anything larger.
fn read_bounded(path: &Path, what: &'static str, limit: usize) -> Result<String, CatalogError> {
    let read_err = |source| CatalogError::Read {
        path: path.to_owned(),
        what,
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::other("not a regular file")));
    }
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() > limit {
        return Err(CatalogError::TooLarge {
            path: path.to_owned(),
            what,
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|_| CatalogError::NotUtf8 {
        path: path.to_owned(),
        what,
    })
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
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "flush-dns"
version = 1
description = "Flush the DNS resolver cache"
changes = "Empties the local DNS cache; nothing else."
tier = "l1"
interpreter = "sh"
os = "linux"
timeout_secs = 30
body = "flush-dns.sh"

[[params]]
name = "host"
description = "a host name"
type = "string"
pattern = "[A-Za-z0-9.-]+"
max_len = 253

[[params]]
name = "count"
description = "how many"
type = "integer"
min = 1
max = 10
default = 3

[[params]]
name = "mode"
description = "how"
type = "enum"
values = ["fast", "full"]
default = "fast"

[[params]]
name = "dry_run"
description = "only show"
type = "bool"
default = true
"#;

    const BODY: &str = "#!/bin/sh\nset -eu\necho flushing\n";

    /// Writes `manifest` and `body` into a fresh directory; returns it and the manifest path.
    fn write(manifest: &str, body: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("flush-dns.toml");
        std::fs::write(&path, manifest).expect("write manifest");
        std::fs::write(dir.path().join("flush-dns.sh"), body).expect("write body");
        (dir, path)
    }

    /// Loads a manifest that must fail; returns the error text.
    fn refused(manifest: &str, body: &[u8]) -> String {
        let (_dir, path) = write(manifest, body);
        match load(&path) {
            Ok(_) => panic!("manifest was accepted:\n{manifest}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("flush-dns"), "error names no file: {text}");
                text
            }
        }
    }

    #[test]
    fn good_manifest_loads() {
        let (_dir, path) = write(GOOD, BODY.as_bytes());
        let (entry, body) = load(&path).expect("good manifest");
        assert_eq!(body, BODY);
        assert_eq!(entry.name, "flush-dns");
        assert_eq!(entry.tier, Tier::L1);
        assert_eq!(entry.interpreter, Interpreter::Sh);
        assert_eq!(entry.timeout_secs, 30);
        assert_eq!(entry.body_sha256, <[u8; 32]>::from(Sha256::digest(BODY)));
        let kinds: Vec<_> = entry.params.iter().map(|p| p.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                ParamKind::String {
                    pattern: "[A-Za-z0-9.-]+".into(),
                    max_len: 253
                },
                ParamKind::Integer { min: 1, max: 10 },
                ParamKind::Enum {
                    values: vec!["fast".into(), "full".into()]
                },
                ParamKind::Bool,
            ]
        );
        let defaults: Vec<_> = entry.params.iter().map(|p| p.default.clone()).collect();
        assert_eq!(
            defaults,
            vec![
                None,
                Some("3".into()),
                Some("fast".into()),
                Some("true".into())
            ]
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = refused(
            &GOOD.replace("os = \"linux\"", "os = \"linux\"\nrun_as = \"root\""),
            BODY.as_bytes(),
        );
        assert!(e.contains("unknown field `run_as`"), "{e}");
        assert!(e.contains("line 9"), "{e}");
        let e = refused(
            &GOOD.replace("max_len = 253", "max_len = 253\nregex = \"x\""),
            BODY.as_bytes(),
        );
        assert!(e.contains("unknown field `regex`"), "{e}");
    }

    #[test]
    fn key_of_another_type_is_refused() {
        let e = refused(
            &GOOD.replace("min = 1\n", "min = 1\npattern = \"[0-9]+\"\n"),
            BODY.as_bytes(),
        );
        assert!(e.contains("parameter \"count\""), "{e}");
        assert!(
            e.contains("`pattern` does not apply to type \"integer\""),
            "{e}"
        );
        let e = refused(
            &GOOD.replace("default = true", "default = true\nmax = 1"),
            BODY.as_bytes(),
        );
        assert!(
            e.contains("parameter \"dry_run\": `max` does not apply"),
            "{e}"
        );
        let e = refused(&GOOD.replace("max_len = 253\n", ""), BODY.as_bytes());
        assert!(e.contains("type \"string\" needs `max_len`"), "{e}");
        let e = refused(
            &GOOD.replace("type = \"enum\"", "type = \"float\""),
            BODY.as_bytes(),
        );
        assert!(e.contains("type \"float\" is not one of"), "{e}");
    }

    #[test]
    fn bad_tier_and_interpreter_are_named() {
        let e = refused(&GOOD.replace("\"l1\"", "\"l4\""), BODY.as_bytes());
        assert!(e.contains("key `tier`"), "{e}");
        assert!(e.contains("expected l1, l2 or l3"), "{e}");
        let e = refused(
            &GOOD.replace("interpreter = \"sh\"", "interpreter = \"perl\""),
            BODY.as_bytes(),
        );
        assert!(e.contains("key `interpreter`: \"perl\""), "{e}");
    }

    #[test]
    fn bad_pattern_and_bad_default_are_refused() {
        let e = refused(
            &GOOD.replace("\"[A-Za-z0-9.-]+\"", "\"([a-z\""),
            BODY.as_bytes(),
        );
        assert!(e.contains("parameter \"host\": bad pattern"), "{e}");
        let e = refused(
            &GOOD.replace("default = 3", "default = 11"),
            BODY.as_bytes(),
        );
        assert!(e.contains("default"), "{e}");
        assert!(e.contains("outside 1..=10"), "{e}");
    }

    #[test]
    fn missing_body_file_is_named() {
        let (dir, path) = write(GOOD, BODY.as_bytes());
        std::fs::remove_file(dir.path().join("flush-dns.sh")).expect("remove body");
        let e = load(&path).map(|_| ()).expect_err("no body").to_string();
        assert!(e.contains("flush-dns.sh: cannot read script body"), "{e}");
        let e = refused(
            &GOOD.replace("\"flush-dns.sh\"", "\"../flush-dns.sh\""),
            BODY.as_bytes(),
        );
        assert!(e.contains("key `body`"), "{e}");
        assert!(e.contains("no `..`"), "{e}");
    }

    #[test]
    fn oversized_and_non_utf8_files_are_refused() {
        let e = refused(GOOD, &vec![b'#'; MAX_BODY_BYTES + 1]);
        assert!(e.contains("script body is over 262144 bytes"), "{e}");
        let (_dir, path) = write(GOOD, &vec![b'#'; MAX_BODY_BYTES]);
        assert!(load(&path).is_ok(), "a body of exactly the limit loads");
        let e = refused(GOOD, b"echo \xff\n");
        assert!(e.contains("script body is not valid UTF-8"), "{e}");
        let big = format!("{GOOD}\n{}", "# padding\n".repeat(MAX_MANIFEST_BYTES / 10));
        let e = refused(&big, BODY.as_bytes());
        assert!(e.contains("manifest is over 65536 bytes"), "{e}");
    }

    #[test]
    fn zero_timeout_is_refused() {
        let e = refused(
            &GOOD.replace("timeout_secs = 30", "timeout_secs = 0"),
            BODY.as_bytes(),
        );
        assert!(e.contains("timeout_secs must be 1..=3600"), "{e}");
    }

    #[test]
    fn sign_verify_round_trip() {
        let (_dir, path) = write(GOOD, BODY.as_bytes());
        let (entry, body) = load(&path).expect("good manifest");
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let signature = sign(&entry, &key);
        assert_eq!(signature.len(), 64);
        verify(&entry, &body, &signature, &public).expect("round trip verifies");
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert!(verify(&entry, &body, &signature, &other).is_err());
    }

    #[test]
    fn changed_body_or_flipped_signature_bit_fails() {
        let (_dir, path) = write(GOOD, BODY.as_bytes());
        let (entry, body) = load(&path).expect("good manifest");
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let signature = sign(&entry, &key);

        let mut changed = body.clone().into_bytes();
        if let Some(b) = changed.get_mut(20) {
            *b ^= 0x01;
        }
        let changed = String::from_utf8(changed).expect("still ASCII");
        let e = verify(&entry, &changed, &signature, &public).expect_err("changed body");
        assert!(matches!(e, CatalogError::BodyChanged { .. }), "{e}");
        assert!(e.to_string().contains("does not match the signed hash"));

        for bit in [0, 100, 511] {
            let mut flipped = signature.clone();
            if let Some(b) = flipped.get_mut(bit / 8) {
                *b ^= 1 << (bit % 8);
            }
            let e = verify(&entry, &body, &flipped, &public).expect_err("flipped bit");
            assert!(matches!(e, CatalogError::BadSignature { .. }), "{e}");
        }

        let mut edited = entry.clone();
        edited.timeout_secs = 3600;
        assert!(verify(&edited, &body, &signature, &public).is_err());
        let mut short = signature.clone();
        short.pop();
        assert!(verify(&entry, &body, &short, &public).is_err());
    }
}
