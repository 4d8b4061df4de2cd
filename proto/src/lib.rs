//! Deskside wire protocol: message types, the one codec, framing and limits, and the
//! pure diagnostics findings. No sockets, no async runtime, no filesystem.
//!
//! Every conversation is one request per bidirectional QUIC stream; each message is a
//! frame ([`frame`]) holding one [`codec`]-encoded value.

pub mod close;
pub mod codec;
pub mod digest;
pub mod error;
pub mod evidence;
pub mod findings;
pub mod frame;
pub mod limits;
pub mod msg;
pub mod summary;

pub use codec::{Message, decode, encode};
pub use error::{DecodeError, EncodeError};

/// Wire protocol version, exchanged first on every connection.
///
/// 4: requests carry a request key that late evidence and session notices echo, and a
/// snapshot's reboot need may be unknown (snapshot version 2).
/// 5: catalog entries carry the signed `self_service` flag; self-service scripts are
/// offered to agents, and agents send requests for help.
pub const PROTOCOL_VERSION: u16 = 5;

/// TLS application protocol name; a peer offering anything else fails the handshake.
pub const ALPN: &[u8] = b"deskside/1";
