//! Errors of the transport shell, each saying what failed and, where useful, what to do.

use deskside_proto::DecodeError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot reach the controller at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection {}", TransportError::explain(.0))]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream failed: {0}")]
    Stream(String),
    #[error("the peer closed the stream before a complete {kind} message")]
    Truncated { kind: &'static str },
    #[error("timed out waiting for a {kind} message")]
    Timeout { kind: &'static str },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("could not encode a message: {0}")]
    Encode(#[from] deskside_proto::EncodeError),
    #[error(
        "protocol version mismatch: the controller speaks version {controller}, this program speaks version {ours}; upgrade the older side"
    )]
    VersionMismatch { controller: u16, ours: u16 },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("certificate or key is unusable: {0}")]
    Pki(String),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

impl TransportError {
    /// Turns a closed connection into words a person can act on.
    pub fn explain(err: &quinn::ConnectionError) -> String {
        match err {
            quinn::ConnectionError::ApplicationClosed(close) => {
                let code = close.error_code.into_inner();
                let reason = String::from_utf8_lossy(&close.reason);
                format!(
                    "closed by the controller ({}): {reason}",
                    deskside_proto::close::describe(code)
                )
            }
            quinn::ConnectionError::ConnectionClosed(close)
                if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                "refused by the controller before the handshake: it is holding as many connections as it may, or many connections from this network address are identifying themselves at this moment (deskside_connections_refused_total on its /metrics counts both); try again in a minute, and ask the controller's admin if it persists".to_owned()
            }
            quinn::ConnectionError::ConnectionClosed(close) => {
                format!("closed by the peer's QUIC stack: {close}")
            }
            other => other.to_string(),
        }
    }
}

/// An error and its causes on one line, `outer: inner: …`, as a user reads it (what
/// anyhow's `{:#}` prints).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
