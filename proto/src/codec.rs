//! The one codec: the only module that names bincode. Swapping the encoding is this file.
//!
//! Decoding is bounded by the message kind's limit, rejects trailing bytes and returns a
//! typed [`DecodeError`]; it never panics on arbitrary input.

use bincode::config;
use bincode::error::{DecodeError as BincodeDecodeError, EncodeError as BincodeEncodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DecodeError, EncodeError};

/// A type that travels as one framed message, with its own size limit.
pub trait Message: Serialize + DeserializeOwned {
    /// Name used in errors and logs, e.g. `"hello"`.
    const KIND: &'static str;
    /// Largest encoded size accepted for this kind (see [`crate::limits`]).
    const MAX_BYTES: u32;
}

// bincode's standard configuration: little-endian, variable-length integers.
fn base_config() -> config::Configuration {
    config::standard()
}

/// Encodes `msg`, refusing values over `M::MAX_BYTES`.
pub fn encode<M: Message>(msg: &M) -> Result<Vec<u8>, EncodeError> {
    let bytes = bincode::serde::encode_to_vec(msg, base_config()).map_err(|e| match e {
        BincodeEncodeError::Other(reason) => EncodeError::Unsupported {
            kind: M::KIND,
            reason: reason.to_string(),
        },
        other => EncodeError::Unsupported {
            kind: M::KIND,
            reason: other.to_string(),
        },
    })?;
    if bytes.len() > M::MAX_BYTES as usize {
        return Err(EncodeError::TooLarge {
            kind: M::KIND,
            len: bytes.len(),
            limit: M::MAX_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes exactly one `M` from `bytes`: bounded by `M::MAX_BYTES`, no trailing bytes.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    if bytes.len() > M::MAX_BYTES as usize {
        return Err(DecodeError::TooLarge {
            kind: M::KIND,
            len: bytes.len() as u64,
            limit: M::MAX_BYTES,
        });
    }
    // The limit also caps the memory every length-prefixed collection inside the message
    // may claim, so a 10-byte frame announcing a 4-billion-element Vec fails instead of
    // allocating.
    let cfg = base_config().with_limit::<{ crate::limits::MAX_DECODE_MEMORY }>();
    let (msg, used) = bincode::serde::decode_from_slice::<M, _>(bytes, cfg)
        .map_err(|e| map_decode(M::KIND, bytes.len(), e))?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            kind: M::KIND,
            extra: bytes.len().saturating_sub(used),
        });
    }
    Ok(msg)
}

fn map_decode(kind: &'static str, got: usize, e: BincodeDecodeError) -> DecodeError {
    match e {
        BincodeDecodeError::UnexpectedEnd { .. } => DecodeError::Truncated { kind, got },
        BincodeDecodeError::LimitExceeded => DecodeError::TooLarge {
            kind,
            len: got as u64,
            limit: crate::limits::MAX_DECODE_MEMORY as u32,
        },
        other => DecodeError::Malformed {
            kind,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::agent::{AgentReply, AgentRequest, Requester};
    use crate::msg::diag::{Disk, Snapshot};
    use crate::msg::hello::Hello;
    use crate::msg::identity::Tier;
    use crate::msg::tech::TechRequest;

    fn hello() -> Hello {
        Hello {
            version: 1,
            software: "deskside-agent 0.1.0".into(),
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&hello()).unwrap_or_default();
        assert_eq!(decode::<Hello>(&bytes), Ok(hello()));

        let req = AgentRequest::Diagnostics {
            requester: Requester {
                technician: "alice".into(),
                tier: Tier::L2,
                ticket: 42,
                request_key: "00112233445566778899aabbccddeeff".into(),
            },
        };
        let bytes = encode(&req).unwrap_or_default();
        assert_eq!(decode::<AgentRequest>(&bytes), Ok(req));

        let mut snap = Snapshot::default();
        snap.disks.push(Disk {
            mount: "/".into(),
            total_bytes: u64::MAX,
            ..Disk::default()
        });
        snap.cpu.usage_percent = 12.5;
        let reply = AgentReply::Snapshot(Box::new(crate::msg::agent::SignedItem {
            key: "0123456789abcdef0123456789abcdef".into(),
            kind: crate::evidence::EvidenceKind::Snapshot,
            bytes: format!("{snap:?}").into_bytes(),
            signature: vec![1; 70],
            redaction: vec!["emails".into()],
        }));
        let bytes = encode(&reply).unwrap_or_default();
        assert_eq!(decode::<AgentReply>(&bytes), Ok(reply));
    }

    /// `SignedItem` as it was when its kind was a `String`: the wire form to keep.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct StringKindItem {
        key: String,
        kind: String,
        bytes: Vec<u8>,
        signature: Vec<u8>,
        redaction: Vec<String>,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    enum StringKindReply {
        Snapshot(Box<StringKindItem>),
    }

    impl Message for StringKindReply {
        const KIND: &'static str = "agent reply";
        const MAX_BYTES: u32 = crate::limits::MAX_EVIDENCE_BYTES;
    }

    fn string_kind_reply(kind: &str) -> StringKindReply {
        StringKindReply::Snapshot(Box::new(StringKindItem {
            key: "k1".into(),
            kind: kind.into(),
            bytes: b"{}".to_vec(),
            signature: vec![7; 3],
            redaction: vec![],
        }))
    }

    #[test]
    fn evidence_kinds_keep_their_wire_bytes() {
        for kind in crate::evidence::EvidenceKind::ALL {
            let typed = AgentReply::Snapshot(Box::new(crate::msg::agent::SignedItem {
                key: "k1".into(),
                kind,
                bytes: b"{}".to_vec(),
                signature: vec![7; 3],
                redaction: vec![],
            }));
            let old = encode(&string_kind_reply(kind.as_str())).unwrap_or_default();
            assert_eq!(encode(&typed).unwrap_or_default(), old, "{kind}");
            assert_eq!(decode::<AgentReply>(&old), Ok(typed));
        }
    }

    #[test]
    fn an_unknown_evidence_kind_is_a_typed_decode_error() {
        let bytes = encode(&string_kind_reply("snapsh0t")).unwrap_or_default();
        let err = decode::<AgentReply>(&bytes);
        assert!(
            matches!(&err, Err(DecodeError::Malformed { reason, .. })
                if reason.contains("unknown kind") && reason.contains("snapsh0t")),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_input_is_a_typed_error() {
        let bytes = encode(&hello()).unwrap_or_default();
        for cut in 0..bytes.len() {
            let err = decode::<Hello>(bytes.get(..cut).unwrap_or_default());
            assert!(
                matches!(err, Err(DecodeError::Truncated { kind: "hello", .. })),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&hello()).unwrap_or_default();
        bytes.push(0);
        assert_eq!(
            decode::<Hello>(&bytes),
            Err(DecodeError::TrailingBytes {
                kind: "hello",
                extra: 1
            })
        );
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let bytes = vec![0u8; crate::limits::MAX_CONTROL_BYTES as usize + 1];
        assert!(matches!(
            decode::<Hello>(&bytes),
            Err(DecodeError::TooLarge { kind: "hello", .. })
        ));
        let huge = Hello {
            version: 1,
            software: "x".repeat(crate::limits::MAX_CONTROL_BYTES as usize),
        };
        assert!(matches!(encode(&huge), Err(EncodeError::TooLarge { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic generator: the fuzz target covers this far more widely.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..512 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes().first().copied().unwrap_or(0)
                })
                .collect();
            let _ = decode::<Hello>(&bytes);
            let _ = decode::<TechRequest>(&bytes);
            let _ = decode::<AgentReply>(&bytes);
        }
    }

    #[test]
    fn a_huge_collection_length_fails_without_allocating() {
        // Variant 0 of TechRequest::NewTicket is index 1; then a string length of ~2^60.
        let bytes = [1u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(decode::<TechRequest>(&bytes).is_err());
        let bytes = [0xfcu8, 0xff, 0xff, 0xff, 0x7f];
        assert!(decode::<crate::msg::tech::TechReply>(&bytes).is_err());
    }

    #[test]
    fn unknown_enum_variants_are_malformed() {
        assert!(matches!(
            decode::<TechRequest>(&[200]),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
