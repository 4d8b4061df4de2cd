//! The first exchange on every connection: protocol versions.
//!
//! [`Hello`] is frozen: every future version must still decode it, so that a mismatch
//! can always be reported with both version numbers.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::limits::MAX_CONTROL_BYTES;

/// Sent by whoever dialled, on the first stream of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// Software name and version, e.g. `deskside-agent 0.1.0`, for logs.
    pub software: String,
}

/// The controller's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Welcome {
        version: u16,
        software: String,
    },
    /// The connection closes after this; both numbers go into the error shown to people.
    VersionMismatch {
        controller: u16,
        peer: u16,
    },
}

impl Message for Hello {
    const KIND: &'static str = "hello";
    const MAX_BYTES: u32 = MAX_CONTROL_BYTES;
}

impl Message for HelloReply {
    const KIND: &'static str = "hello reply";
    const MAX_BYTES: u32 = MAX_CONTROL_BYTES;
}
