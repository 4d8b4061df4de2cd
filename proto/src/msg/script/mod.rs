//! Remediation scripts: the signed catalog entry, typed parameters, and the events a run
//! streams back. Validation (`check.rs`) is pure so the controller and the agent apply
//! exactly the same rules.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::msg::identity::Tier;

mod check;

pub use check::ParamError;

/// Longest script body: catalog scripts are short shell programs.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest parameter value.
pub const MAX_PARAM_BYTES: usize = 4096;
/// Longest regex pattern in a manifest (regexes are compiled with a size limit too).
pub const MAX_PATTERN_BYTES: usize = 512;
/// Longest a script may run; manifests choose less.
pub const MAX_TIMEOUT_SECS: u32 = 3600;
/// Output kept per stream; the rest is counted and marked truncated.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Programs a script may be written for; the agent runs them by absolute path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpreter {
    Sh,
    Bash,
    Python3,
}

impl Interpreter {
    pub fn path(self) -> &'static str {
        match self {
            Interpreter::Sh => "/bin/sh",
            Interpreter::Bash => "/bin/bash",
            Interpreter::Python3 => "/usr/bin/python3",
        }
    }
}

/// A parameter's type, with its bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// Must match `pattern` (anchored) and be at most `max_len` bytes.
    String {
        pattern: String,
        max_len: u32,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Enum {
        values: Vec<String>,
    },
    Bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// `[a-z][a-z0-9_]*`; reaches the script as `DESKSIDE_PARAM_<NAME>` (upper case).
    pub name: String,
    pub description: String,
    pub kind: ParamKind,
    /// Used when the technician gives none; `None` makes the parameter required.
    pub default: Option<String>,
}

/// A script as the catalog holds it. The signature covers [`signing_bytes`] of this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub name: String,
    pub version: u32,
    pub description: String,
    /// What the script changes on the machine, in plain words ("nothing: read-only").
    pub changes: String,
    pub tier: Tier,
    pub interpreter: Interpreter,
    /// `linux` today.
    pub os: String,
    pub timeout_secs: u32,
    pub params: Vec<ParamSpec>,
    /// SHA-256 of the body (hex in JSON).
    #[serde(with = "crate::digest")]
    pub body_sha256: [u8; 32],
    /// An admin marked it for the machine's user to run without a technician (L0
    /// self-service): sent to agents ahead of time, its parameters limited to closed
    /// choices (see [`CatalogEntry::check`]). Absent in older catalogs: `false`.
    #[serde(default)]
    pub self_service: bool,
}

/// What the controller sends: entry, body and the controller's ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedScript {
    pub entry: CatalogEntry,
    pub body: String,
    pub signature: Vec<u8>,
}

/// The exact bytes the script key signs: a domain label, then the encoded entry.
///
/// An entry that is not self-service signs exactly as before the flag existed (label
/// `v1`, the entry without the flag), so every catalog signed then still verifies. A
/// self-service entry signs under label `v2` with the flag included: the flag cannot be
/// added to, or removed from, a signed entry without the signature failing.
pub fn signing_bytes(entry: &CatalogEntry) -> Vec<u8> {
    // A catalog entry is far below the request limit; an absurd one signs as empty and
    // then fails verification on the agent, which is the safe direction.
    if entry.self_service {
        let mut out = b"deskside catalog entry v2\0".to_vec();
        out.extend_from_slice(&codec::encode(&EntryForSigning(entry.clone())).unwrap_or_default());
        out
    } else {
        let mut out = b"deskside catalog entry v1\0".to_vec();
        out.extend_from_slice(&codec::encode(&EntryV1::from(entry)).unwrap_or_default());
        out
    }
}

#[derive(Serialize, Deserialize)]
struct EntryForSigning(CatalogEntry);

impl codec::Message for EntryForSigning {
    const KIND: &'static str = "catalog entry";
    const MAX_BYTES: u32 = crate::limits::MAX_REQUEST_BYTES;
}

/// A catalog entry's fields as they were signed before `self_service` existed, in the
/// same order: bincode writes fields in order with no names, so these bytes are exactly
/// the old `EntryForSigning`'s.
#[derive(Serialize, Deserialize)]
struct EntryV1 {
    name: String,
    version: u32,
    description: String,
    changes: String,
    tier: Tier,
    interpreter: Interpreter,
    os: String,
    timeout_secs: u32,
    params: Vec<ParamSpec>,
    #[serde(with = "crate::digest")]
    body_sha256: [u8; 32],
}

impl From<&CatalogEntry> for EntryV1 {
    fn from(e: &CatalogEntry) -> EntryV1 {
        EntryV1 {
            name: e.name.clone(),
            version: e.version,
            description: e.description.clone(),
            changes: e.changes.clone(),
            tier: e.tier,
            interpreter: e.interpreter,
            os: e.os.clone(),
            timeout_secs: e.timeout_secs,
            params: e.params.clone(),
            body_sha256: e.body_sha256,
        }
    }
}

impl codec::Message for EntryV1 {
    const KIND: &'static str = "catalog entry";
    const MAX_BYTES: u32 = crate::limits::MAX_REQUEST_BYTES;
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunResult {
    /// `None` when killed by a signal.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Output beyond [`MAX_OUTPUT_BYTES`] per stream was dropped.
    pub truncated: bool,
    pub timed_out: bool,
    /// Ended by the session ending (user, expiry or technician).
    pub cancelled: bool,
}

/// The evidence a script run leaves: made and signed by the agent, stored verbatim
/// (as JSON) by the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub script: String,
    pub version: u32,
    /// Hex SHA-256 of the body that ran.
    pub body_sha256: String,
    pub tier: Tier,
    pub agent: String,
    pub technician: String,
    pub ticket: u64,
    /// The grant the run happened under; `None` when the machine's policy allows the
    /// scope unattended.
    pub grant: Option<String>,
    /// Parameters as `DESKSIDE_PARAM_*` pairs, exactly as the script received them.
    pub params: Vec<(String, String)>,
    pub started_at_ms: u64,
    pub result: RunResult,
    /// Output kept (up to [`MAX_OUTPUT_BYTES`] per stream), lossily decoded as UTF-8.
    pub stdout: String,
    pub stderr: String,
}

/// Streamed from the agent while a script runs; the last one is `Finished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunEvent {
    Output { stream: OutputStream, data: Vec<u8> },
    Finished(RunResult),
}

#[cfg(test)]
mod tests {
    use super::check::tests::entry;
    use super::*;

    #[test]
    fn signed_scripts_survive_the_codec() {
        let signed = SignedScript {
            entry: entry(),
            body: "echo hi\n".into(),
            signature: vec![7; 64],
        };
        let bytes = signing_bytes(&signed.entry);
        assert!(bytes.len() > 30);
        let wire = codec::encode(&EntryForSigning(signed.entry.clone())).unwrap_or_default();
        let back: Result<EntryForSigning, _> = codec::decode(&wire);
        assert_eq!(back.map(|e| e.0), Ok(signed.entry));
    }

    /// `signing_bytes(&entry())` as the controller computed it before `self_service`
    /// existed: every catalog signed then must still verify.
    const SIGNED_BEFORE_SELF_SERVICE: &str = "6465736b7369646520636174616c6f6720656e7472792076310009666c7573682d646e7301016401630000056c696e75781e0404686f737400000e5b412d5a612d7a302d392e2d5d2bfbfd000005636f756e7400010214010133046d6f646500020204666173740466756c6c010466617374076472795f72756e00030104747275650000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn an_entry_not_self_service_signs_exactly_as_before_the_flag() {
        assert_eq!(
            hex::encode(signing_bytes(&entry())),
            SIGNED_BEFORE_SELF_SERVICE
        );
    }

    #[test]
    fn the_self_service_flag_is_covered_by_the_signature() {
        let plain = entry();
        let mut flagged = entry();
        flagged.self_service = true;
        assert_ne!(signing_bytes(&plain), signing_bytes(&flagged));
        assert!(signing_bytes(&flagged).starts_with(b"deskside catalog entry v2\0"));
    }

    #[test]
    fn an_old_catalog_row_without_the_flag_reads_as_not_self_service() {
        let mut json = serde_json::to_value(entry()).unwrap_or_default();
        if let Some(map) = json.as_object_mut() {
            map.remove("self_service");
        }
        let back: Result<CatalogEntry, _> = serde_json::from_value(json);
        assert_eq!(back.map(|e| e.self_service).ok(), Some(false));
    }

    #[test]
    fn signing_bytes_change_with_any_field() {
        let a = entry();
        let mut b = entry();
        b.timeout_secs = 31;
        assert_ne!(signing_bytes(&a), signing_bytes(&b));
        assert!(signing_bytes(&a).starts_with(b"deskside catalog entry v1\0"));
    }
}
