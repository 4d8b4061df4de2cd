//! Typed errors for everything that decodes untrusted bytes.

/// Why bytes from a peer, a file or the command line could not be turned into a message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{kind} frame announces {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        kind: &'static str,
        len: u64,
        limit: u32,
    },
    #[error("{kind} message is truncated: needed more than the {got} bytes received")]
    Truncated { kind: &'static str, got: usize },
    #[error("{kind} message has {extra} trailing bytes after a complete message")]
    TrailingBytes { kind: &'static str, extra: usize },
    #[error("{kind} message is malformed: {reason}")]
    Malformed { kind: &'static str, reason: String },
}

/// A message could not be encoded (only possible for values over their kind's limit).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{kind} message is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        kind: &'static str,
        len: usize,
        limit: u32,
    },
    #[error("{kind} message could not be encoded: {reason}")]
    Unsupported { kind: &'static str, reason: String },
}
