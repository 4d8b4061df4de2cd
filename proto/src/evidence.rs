//! Evidence kinds as a closed set, and the payload type each kind carries.
//!
//! An evidence item is JSON bytes with a kind. On the wire and in the controller's
//! database the kind is a short string (`snapshot`, `script_run`, …); in code it is an
//! [`EvidenceKind`], so a misspelt kind does not compile. [`Evidence`] ties a payload
//! type to its kind: [`seal_bytes`] encodes one, [`open`] checks the kind and decodes
//! with a bound.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::MAX_EVIDENCE_BYTES;
use crate::msg::diag::Snapshot;
use crate::msg::files::FileManifest;
use crate::msg::script::RunRecord;

/// What an evidence item is. The strings are the wire and storage form, fixed forever:
/// stored items and bundles name their kind with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EvidenceKind {
    /// A diagnostics [`Snapshot`], made by an agent.
    Snapshot,
    /// The [`RunRecord`] of a script run, made by an agent.
    ScriptRun,
    /// A collected file's bytes, stored verbatim.
    File,
    /// The agent's signed [`FileManifest`] describing a collected file.
    FileManifest,
    /// A session record (grant, refusal, no answer), made by the controller.
    Session,
}

impl EvidenceKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EvidenceKind; 5] = [
        EvidenceKind::Snapshot,
        EvidenceKind::ScriptRun,
        EvidenceKind::File,
        EvidenceKind::FileManifest,
        EvidenceKind::Session,
    ];

    /// The wire and storage name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Snapshot => "snapshot",
            EvidenceKind::ScriptRun => "script_run",
            EvidenceKind::File => "file",
            EvidenceKind::FileManifest => "file_manifest",
            EvidenceKind::Session => "session",
        }
    }

    /// Whether items of this kind are made (and signed) by the controller, never by an
    /// agent.
    pub const fn controller_made(self) -> bool {
        matches!(self, EvidenceKind::Session)
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind name that is none of [`EvidenceKind`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("evidence of unknown kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for EvidenceKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<EvidenceKind, UnknownKind> {
        EvidenceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.chars().take(MAX_KIND_ECHO).collect()))
    }
}

/// How much of an unknown kind name an error repeats back: enough to recognise it,
/// not a peer's megabyte.
const MAX_KIND_ECHO: usize = 64;

impl Serialize for EvidenceKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EvidenceKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EvidenceKind, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A payload type of an evidence kind, stored as JSON.
pub trait Evidence: Serialize + DeserializeOwned {
    const KIND: EvidenceKind;
    /// Largest item of this kind [`open`] decodes.
    const MAX_BYTES: u32 = MAX_EVIDENCE_BYTES;
}

impl Evidence for Snapshot {
    const KIND: EvidenceKind = EvidenceKind::Snapshot;
}

impl Evidence for RunRecord {
    const KIND: EvidenceKind = EvidenceKind::ScriptRun;
}

impl Evidence for FileManifest {
    const KIND: EvidenceKind = EvidenceKind::FileManifest;
}

/// Why an item's bytes are not a `T`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("a {found} item where a {expected} was due")]
    WrongKind {
        expected: EvidenceKind,
        found: EvidenceKind,
    },
    #[error("{kind} item is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        kind: EvidenceKind,
        len: usize,
        limit: u32,
    },
    /// The JSON does not decode; the message is the decoder's, as it always was.
    #[error("{0}")]
    Unreadable(#[from] serde_json::Error),
}

/// Why a value could not be encoded as evidence.
#[derive(Debug, thiserror::Error)]
#[error("encoding {kind}: {source}")]
pub struct SealError {
    pub kind: EvidenceKind,
    #[source]
    pub source: serde_json::Error,
}

/// Decodes the bytes of an item of kind `kind` as a `T`: the kind must be `T`'s and the
/// bytes at most `T::MAX_BYTES`.
pub fn open<T: Evidence>(kind: EvidenceKind, bytes: &[u8]) -> Result<T, OpenError> {
    if kind != T::KIND {
        return Err(OpenError::WrongKind {
            expected: T::KIND,
            found: kind,
        });
    }
    open_bytes(bytes)
}

/// Decodes bytes already known to be of `T`'s kind (a stored blob), with the bound.
pub fn open_bytes<T: Evidence>(bytes: &[u8]) -> Result<T, OpenError> {
    if bytes.len() > T::MAX_BYTES as usize {
        return Err(OpenError::TooLarge {
            kind: T::KIND,
            len: bytes.len(),
            limit: T::MAX_BYTES,
        });
    }
    Ok(serde_json::from_slice(bytes)?)
}

/// `value` as a JSON tree, for redaction before [`seal_value`].
pub fn to_value<T: Evidence>(value: &T) -> Result<serde_json::Value, SealError> {
    serde_json::to_value(value).map_err(|source| SealError {
        kind: T::KIND,
        source,
    })
}

/// The stored bytes of a (redacted) evidence tree of `kind`: pretty JSON.
pub fn seal_value(kind: EvidenceKind, value: &serde_json::Value) -> Result<Vec<u8>, SealError> {
    serde_json::to_vec_pretty(value).map_err(|source| SealError { kind, source })
}

/// The stored bytes of `value`, unredacted: its kind and pretty JSON.
pub fn seal_bytes<T: Evidence>(value: &T) -> Result<(EvidenceKind, Vec<u8>), SealError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| SealError {
        kind: T::KIND,
        source,
    })?;
    Ok((T::KIND, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_stay_fixed() {
        let names: Vec<&str> = EvidenceKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["snapshot", "script_run", "file", "file_manifest", "session"]
        );
        for kind in EvidenceKind::ALL {
            assert_eq!(kind.as_str().parse::<EvidenceKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert!(EvidenceKind::Session.controller_made());
        assert!(!EvidenceKind::Snapshot.controller_made());
    }

    #[test]
    fn an_unknown_name_is_a_typed_error_with_a_bounded_echo() {
        let err = "snapshots"
            .parse::<EvidenceKind>()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("evidence of unknown kind \"snapshots\"")
        );
        let long = "x".repeat(10_000);
        let echoed = long.parse::<EvidenceKind>().err().map(|e| e.0.len());
        assert_eq!(echoed, Some(MAX_KIND_ECHO));
    }

    #[test]
    fn serialises_as_the_same_string_as_before() -> Result<(), serde_json::Error> {
        let json = serde_json::to_string(&EvidenceKind::ScriptRun)?;
        assert_eq!(json, "\"script_run\"");
        let back: EvidenceKind = serde_json::from_str(&json)?;
        assert_eq!(back, EvidenceKind::ScriptRun);
        assert!(serde_json::from_str::<EvidenceKind>("\"snapsh0t\"").is_err());
        Ok(())
    }

    #[test]
    fn open_checks_the_kind_and_the_bound() {
        let err = open::<RunRecord>(EvidenceKind::Snapshot, b"{}");
        assert!(
            matches!(
                err,
                Err(OpenError::WrongKind {
                    expected: EvidenceKind::ScriptRun,
                    found: EvidenceKind::Snapshot
                })
            ),
            "{err:?}"
        );
        let err = open::<RunRecord>(EvidenceKind::ScriptRun, b"not json");
        assert!(matches!(err, Err(OpenError::Unreadable(_))), "{err:?}");
        let big = vec![b' '; MAX_EVIDENCE_BYTES as usize + 1];
        let err = open::<RunRecord>(EvidenceKind::ScriptRun, &big);
        assert!(matches!(err, Err(OpenError::TooLarge { .. })), "{err:?}");
    }

    #[test]
    fn a_sealed_item_opens_as_what_it_was() -> Result<(), Box<dyn std::error::Error>> {
        let snapshot = Snapshot::default();
        let (kind, bytes) = seal_bytes(&snapshot)?;
        assert_eq!(kind, EvidenceKind::Snapshot);
        assert_eq!(open::<Snapshot>(kind, &bytes)?, snapshot);
        Ok(())
    }
}
