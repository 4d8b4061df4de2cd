//! What two controller nodes say to each other over NATS about one relayed request
//! stream: plain data and pure functions, bounded decodes with typed errors.
//!
//! A relay frame is `kind: u8`, `seq: u64` (little-endian; every frame a side sends is
//! numbered, so a frame NATS dropped shows as a gap) and a body. Requests and
//! acknowledgements going down carry the proto's own encoding, decoded there with the
//! proto's limits; bytes coming up are the agent's stream as it sent them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use deskside_proto::limits::MAX_AGENT_REQUEST_BYTES;

/// Most bytes of the agent's stream one frame carries up: large enough that a 256 MiB
/// collect is a thousand NATS messages, small enough to sit far below NATS's default
/// 1 MiB `max_payload`.
pub const MAX_DATA_BYTES: usize = 256 * 1024;
/// Largest relay frame either way: a request to the agent (a signed script) is the
/// largest thing that goes down.
pub const MAX_FRAME_BYTES: usize = HEADER_BYTES + MAX_AGENT_REQUEST_BYTES as usize;
/// A stream-open request or its answer: an agent id and a NATS subject, or a reason.
pub const MAX_OPEN_BYTES: usize = 4 * 1024;
/// Longest NATS subject accepted from the other node (an inbox is ~30 bytes).
pub const MAX_SUBJECT_BYTES: usize = 256;

const HEADER_BYTES: usize = 1 + 8;

/// Why bytes from the other node are not a relay message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("a relay message of {len} bytes, over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("a relay message cut short")]
    Truncated,
    #[error("a relay message of unknown kind {0}")]
    UnknownKind(u8),
    #[error("a relay message with a malformed field: {0}")]
    Malformed(&'static str),
}

/// Toward the node holding the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// An `AgentRequest`, proto-encoded.
    Request(Bytes),
    /// A `NoticeAck`, proto-encoded; the stream's sending side ends after it.
    Acknowledge(Bytes),
    /// Nothing more will be asked on this stream.
    Finish,
    /// Stop reading the agent's stream with this code.
    Stop(u32),
    /// The requester has consumed this many bytes of the agent's stream in all.
    Credit(u64),
    /// The requester is done with the stream.
    Close,
    /// Still here.
    Beat,
}

/// Back from the node holding the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Up {
    /// The next bytes of the agent's stream.
    Data(Bytes),
    /// The agent ended its stream.
    End,
    /// The agent's stream broke there, for this reason.
    Failed(String),
    /// Still here.
    Beat,
}

/// One numbered frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T> {
    pub seq: u64,
    pub body: T,
}

fn header(kind: u8, seq: u64, body_len: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(HEADER_BYTES + body_len);
    out.put_u8(kind);
    out.put_u64_le(seq);
    out
}

fn split_header(mut bytes: Bytes, limit: usize) -> Result<(u8, u64, Bytes), WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    if bytes.len() < HEADER_BYTES {
        return Err(WireError::Truncated);
    }
    let kind = bytes.get_u8();
    let seq = bytes.get_u64_le();
    Ok((kind, seq, bytes))
}

fn fixed<const N: usize>(body: &Bytes) -> Result<[u8; N], WireError> {
    <[u8; N]>::try_from(body.as_ref()).map_err(|_| WireError::Malformed("fixed-size field"))
}

fn empty(body: &Bytes) -> Result<(), WireError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(WireError::Malformed("unexpected body"))
    }
}

impl Down {
    pub fn encode(&self, seq: u64) -> Bytes {
        let (kind, body): (u8, Bytes) = match self {
            Down::Request(b) => (1, b.clone()),
            Down::Acknowledge(b) => (2, b.clone()),
            Down::Finish => (3, Bytes::new()),
            Down::Stop(code) => (4, Bytes::copy_from_slice(&code.to_le_bytes())),
            Down::Credit(n) => (5, Bytes::copy_from_slice(&n.to_le_bytes())),
            Down::Close => (6, Bytes::new()),
            Down::Beat => (7, Bytes::new()),
        };
        let mut out = header(kind, seq, body.len());
        out.put_slice(&body);
        out.freeze()
    }

    pub fn decode(bytes: Bytes) -> Result<Frame<Down>, WireError> {
        let (kind, seq, body) = split_header(bytes, MAX_FRAME_BYTES)?;
        let body = match kind {
            1 => Down::Request(body),
            2 => Down::Acknowledge(body),
            3 => empty(&body).map(|()| Down::Finish)?,
            4 => Down::Stop(u32::from_le_bytes(fixed(&body)?)),
            5 => Down::Credit(u64::from_le_bytes(fixed(&body)?)),
            6 => empty(&body).map(|()| Down::Close)?,
            7 => empty(&body).map(|()| Down::Beat)?,
            other => return Err(WireError::UnknownKind(other)),
        };
        Ok(Frame { seq, body })
    }
}

/// Longest reason carried up when the agent's stream breaks.
const MAX_REASON_BYTES: usize = 1024;

impl Up {
    pub fn encode(&self, seq: u64) -> Bytes {
        let (kind, body): (u8, Bytes) = match self {
            Up::Data(b) => (1, b.clone()),
            Up::End => (2, Bytes::new()),
            Up::Failed(reason) => (3, Bytes::from(clip(reason, MAX_REASON_BYTES).to_owned())),
            Up::Beat => (4, Bytes::new()),
        };
        let mut out = header(kind, seq, body.len());
        out.put_slice(&body);
        out.freeze()
    }

    pub fn decode(bytes: Bytes) -> Result<Frame<Up>, WireError> {
        let (kind, seq, body) = split_header(bytes, HEADER_BYTES + MAX_DATA_BYTES)?;
        let body = match kind {
            1 => Up::Data(body),
            2 => empty(&body).map(|()| Up::End)?,
            3 => Up::Failed(text(&body, MAX_REASON_BYTES)?),
            4 => empty(&body).map(|()| Up::Beat)?,
            other => return Err(WireError::UnknownKind(other)),
        };
        Ok(Frame { seq, body })
    }
}

fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn text(body: &[u8], max: usize) -> Result<String, WireError> {
    if body.len() > max {
        return Err(WireError::Malformed("text too long"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| WireError::Malformed("text not UTF-8"))
}

/// A NATS subject the other node named for us to publish to: bounded, no wildcards,
/// no spaces.
pub fn valid_subject(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SUBJECT_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        && !s.split('.').any(str::is_empty)
}

/// "Open a stream to agent X; send what comes back to subject `up`" (from node `from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub agent: String,
    pub up: String,
    pub from: String,
}

/// The answer to an [`Open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Send down-frames to this subject.
    Stream { down: String },
    /// The agent is not connected to this node (any more).
    Offline,
    /// The stream could not be opened, for this reason.
    Failed(String),
}

fn put_text(out: &mut BytesMut, s: &str) {
    let s = clip(s, usize::from(u16::MAX));
    // `clip` bounds the length to u16.
    out.put_u16_le(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(s.as_bytes());
}

fn get_text(input: &mut Bytes) -> Result<String, WireError> {
    if input.len() < 2 {
        return Err(WireError::Truncated);
    }
    let len = usize::from(input.get_u16_le());
    if input.len() < len {
        return Err(WireError::Truncated);
    }
    let raw = input.split_to(len);
    text(&raw, MAX_OPEN_BYTES)
}

fn bounded(bytes: &Bytes) -> Result<(), WireError> {
    if bytes.len() > MAX_OPEN_BYTES {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            limit: MAX_OPEN_BYTES,
        });
    }
    Ok(())
}

fn finished(rest: &Bytes) -> Result<(), WireError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(WireError::Malformed("trailing bytes"))
    }
}

impl Open {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        put_text(&mut out, &self.agent);
        put_text(&mut out, &self.up);
        put_text(&mut out, &self.from);
        out.freeze()
    }

    pub fn decode(mut bytes: Bytes) -> Result<Open, WireError> {
        bounded(&bytes)?;
        let agent = get_text(&mut bytes)?;
        let up = get_text(&mut bytes)?;
        let from = get_text(&mut bytes)?;
        finished(&bytes)?;
        if !valid_subject(&up) {
            return Err(WireError::Malformed("reply subject"));
        }
        Ok(Open { agent, up, from })
    }
}

impl Opened {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Opened::Stream { down } => {
                out.put_u8(1);
                put_text(&mut out, down);
            }
            Opened::Offline => out.put_u8(2),
            Opened::Failed(reason) => {
                out.put_u8(3);
                put_text(&mut out, clip(reason, MAX_REASON_BYTES));
            }
        }
        out.freeze()
    }

    pub fn decode(mut bytes: Bytes) -> Result<Opened, WireError> {
        bounded(&bytes)?;
        if bytes.is_empty() {
            return Err(WireError::Truncated);
        }
        let opened = match bytes.get_u8() {
            1 => {
                let down = get_text(&mut bytes)?;
                if !valid_subject(&down) {
                    return Err(WireError::Malformed("stream subject"));
                }
                Opened::Stream { down }
            }
            2 => Opened::Offline,
            3 => Opened::Failed(get_text(&mut bytes)?),
            other => return Err(WireError::UnknownKind(other)),
        };
        finished(&bytes)?;
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_their_numbers() {
        for (seq, d) in [
            (0, Down::Request(Bytes::from_static(b"req"))),
            (1, Down::Acknowledge(Bytes::from_static(b"ack"))),
            (2, Down::Finish),
            (3, Down::Stop(10)),
            (4, Down::Credit(u64::MAX)),
            (5, Down::Close),
            (u64::MAX, Down::Beat),
        ] {
            assert_eq!(Down::decode(d.encode(seq)), Ok(Frame { seq, body: d }));
        }
        for (seq, u) in [
            (7, Up::Data(Bytes::from(vec![9u8; MAX_DATA_BYTES]))),
            (8, Up::End),
            (9, Up::Failed("stream reset by agent".into())),
            (10, Up::Beat),
        ] {
            assert_eq!(Up::decode(u.encode(seq)), Ok(Frame { seq, body: u }));
        }
        let open = Open {
            agent: "ag-1".into(),
            up: "_INBOX.abc".into(),
            from: "ctl-a".into(),
        };
        assert_eq!(Open::decode(open.encode()), Ok(open));
        for o in [
            Opened::Stream {
                down: "_INBOX.def".into(),
            },
            Opened::Offline,
            Opened::Failed("no".into()),
        ] {
            assert_eq!(Opened::decode(o.encode()), Ok(o));
        }
    }

    #[test]
    fn hostile_bytes_are_typed_errors() {
        assert_eq!(
            Up::decode(Bytes::from(vec![1u8; HEADER_BYTES + MAX_DATA_BYTES + 1])),
            Err(WireError::TooLarge {
                len: HEADER_BYTES + MAX_DATA_BYTES + 1,
                limit: HEADER_BYTES + MAX_DATA_BYTES
            })
        );
        assert_eq!(
            Down::decode(Bytes::from_static(b"\x01\x00")),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Down::decode(Down::Beat.encode(1).slice(..).chain_kind(99)),
            Err(WireError::UnknownKind(99))
        );
        let mut stop = Down::Stop(1).encode(0).to_vec();
        stop.push(0);
        assert!(matches!(
            Down::decode(Bytes::from(stop)),
            Err(WireError::Malformed(_))
        ));
        // A reply subject with a wildcard would let the peer subscribe us to others'.
        let open = Open {
            agent: "ag-1".into(),
            up: "_INBOX.>".into(),
            from: "ctl-a".into(),
        };
        assert!(Open::decode(open.encode()).is_err());
        assert!(Open::decode(Bytes::from_static(b"\xff\xff")).is_err());
        assert!(Opened::decode(Bytes::new()).is_err());
        assert!(Opened::decode(Bytes::from(vec![3u8; MAX_OPEN_BYTES + 1])).is_err());
        assert!(!valid_subject("a..b") && !valid_subject("a b") && valid_subject("_INBOX.x"));
    }

    trait ChainKind {
        fn chain_kind(self, kind: u8) -> Bytes;
    }

    impl ChainKind for Bytes {
        fn chain_kind(self, kind: u8) -> Bytes {
            let mut v = self.to_vec();
            if let Some(first) = v.first_mut() {
                *first = kind;
            }
            Bytes::from(v)
        }
    }
}
