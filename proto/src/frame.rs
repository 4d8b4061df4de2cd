//! Framing: a little-endian `u32` length, then that many bytes of one encoded message.
//!
//! Pure functions over byte slices; the async read/write loops live with the sockets.
//! The reader learns the length from [`payload_len`] — checked against the expected
//! message kind's limit — before it allocates the payload buffer.

use crate::codec::{self, Message};
use crate::error::{DecodeError, EncodeError};

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// Encodes `msg` as one frame: length prefix plus payload.
pub fn encode_frame<M: Message>(msg: &M) -> Result<Vec<u8>, EncodeError> {
    let payload = codec::encode(msg)?;
    let len = u32::try_from(payload.len()).map_err(|_| EncodeError::TooLarge {
        kind: M::KIND,
        len: payload.len(),
        limit: M::MAX_BYTES,
    })?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// The payload length a frame header announces, refused if over `M`'s limit.
pub fn payload_len<M: Message>(header: [u8; HEADER_LEN]) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(header);
    if len > M::MAX_BYTES {
        return Err(DecodeError::TooLarge {
            kind: M::KIND,
            len: u64::from(len),
            limit: M::MAX_BYTES,
        });
    }
    Ok(len as usize)
}

/// Decodes a whole frame held in one buffer: header, payload, nothing after.
pub fn decode_frame<M: Message>(frame: &[u8]) -> Result<M, DecodeError> {
    let (header, payload) =
        frame
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(DecodeError::Truncated {
                kind: M::KIND,
                got: frame.len(),
            })?;
    let len = payload_len::<M>(*header)?;
    match payload.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated {
            kind: M::KIND,
            got: frame.len(),
        }),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes {
            kind: M::KIND,
            extra: payload.len() - len,
        }),
        std::cmp::Ordering::Equal => codec::decode(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_CONTROL_BYTES;
    use crate::msg::hello::Hello;

    fn hello() -> Hello {
        Hello {
            version: 1,
            software: "t".into(),
        }
    }

    #[test]
    fn frame_round_trips() {
        let frame = encode_frame(&hello()).unwrap_or_default();
        assert_eq!(decode_frame::<Hello>(&frame), Ok(hello()));
    }

    #[test]
    fn length_over_the_kind_limit_is_refused_from_the_header_alone() {
        let header = (MAX_CONTROL_BYTES + 1).to_le_bytes();
        assert_eq!(
            payload_len::<Hello>(header),
            Err(DecodeError::TooLarge {
                kind: "hello",
                len: u64::from(MAX_CONTROL_BYTES) + 1,
                limit: MAX_CONTROL_BYTES
            })
        );
        assert!(payload_len::<Hello>(u32::MAX.to_le_bytes()).is_err());
        assert_eq!(
            payload_len::<Hello>(MAX_CONTROL_BYTES.to_le_bytes()),
            Ok(4096)
        );
    }

    #[test]
    fn truncated_and_trailing_frames_are_refused() {
        let frame = encode_frame(&hello()).unwrap_or_default();
        for cut in 0..frame.len() {
            let short = frame.get(..cut).unwrap_or_default();
            assert!(matches!(
                decode_frame::<Hello>(short),
                Err(DecodeError::Truncated { .. })
            ));
        }
        let mut long = frame.clone();
        long.extend_from_slice(b"xy");
        assert_eq!(
            decode_frame::<Hello>(&long),
            Err(DecodeError::TrailingBytes {
                kind: "hello",
                extra: 2
            })
        );
    }
}
