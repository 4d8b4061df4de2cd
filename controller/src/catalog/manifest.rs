//! A script's manifest (`NAME.toml`) and body, read with a bound and checked key by key
//! into a [`CatalogEntry`].

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::script::{
    CatalogEntry, Interpreter, MAX_BODY_BYTES, MAX_PARAM_BYTES, ParamKind, ParamSpec,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{CatalogError, Location};

/// A manifest is a page of TOML; 64 KiB is generous and keeps a stray file from being
/// read whole into memory.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

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
    /// The machine's user may run it without a technician (L0); see
    /// [`CatalogEntry::self_service`].
    #[serde(default)]
    self_service: bool,
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

    let body_path = body_path(manifest_path, &manifest.body)?;
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
        self_service: manifest.self_service,
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
fn body_path(manifest_path: &Path, body: &str) -> Result<PathBuf, CatalogError> {
    let rel = Path::new(body);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if body.is_empty() || !plain {
        return Err(CatalogError::Key {
            path: manifest_path.to_owned(),
            key: "body",
            reason: format!(
                "{body:?} must be a relative path below the manifest's directory (no `..`, not absolute)"
            ),
        });
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
