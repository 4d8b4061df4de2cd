//! Enrollment: a one-time token, a CSR, and the certificate the controller issues.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Message};
use crate::error::DecodeError;
use crate::limits::{MAX_CONTROL_BYTES, MAX_ENROLL_BYTES, MAX_TOKEN_CHARS};
use crate::msg::identity::{Identity, Tier};

/// Who a token enrolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    Agent,
    Technician,
}

/// What `deskside token create` / `tech add` print, as text: `dsk1-<base64url>`.
///
/// The secret is stored on the controller only as its SHA-256; the CA fingerprint lets the
/// enrolling side pin the controller before it has any certificate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    pub kind: TokenKind,
    /// `HOST:PORT` the controller listens on.
    pub controller: String,
    /// SHA-256 of the CA certificate (DER).
    pub ca_sha256: [u8; 32],
    pub secret: [u8; 32],
}

impl std::fmt::Debug for EnrollToken {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollToken")
            .field("kind", &self.kind)
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}

impl Message for EnrollToken {
    const KIND: &'static str = "enrollment token";
    const MAX_BYTES: u32 = MAX_CONTROL_BYTES;
}

/// Why a token string is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token is {0} characters long; real tokens are about 120")]
    TooLong(usize),
    #[error("this is not a Deskside enrollment token (it should start with `{TOKEN_PREFIX}`)")]
    WrongPrefix,
    #[error("the token is damaged (not base64url): {0}")]
    BadEncoding(String),
    #[error("the token is damaged: {0}")]
    Decode(#[from] DecodeError),
}

/// Prefix of the text form; the digit is the token format version.
pub const TOKEN_PREFIX: &str = "dsk1-";

impl EnrollToken {
    pub fn to_text(&self) -> String {
        // Encoding a fixed-size struct of a short string and two arrays cannot exceed
        // MAX_CONTROL_BYTES unless the controller address is absurd; fall back to empty.
        let bytes = codec::encode(self).unwrap_or_default();
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses a token as a user pasted it (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::TooLong(text.len()));
        }
        let body = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::WrongPrefix)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| TokenError::BadEncoding(e.to_string()))?;
        Ok(codec::decode(&bytes)?)
    }
}

/// Sent on a connection without a client certificate: the token's secret and a CSR.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub secret: [u8; 32],
    /// PKCS#10 request in PEM; the private key never leaves the enrolling machine.
    pub csr_pem: String,
    /// For the controller's records: hostname and OS of the enrolling machine.
    pub hostname: String,
    pub os: String,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("hostname", &self.hostname)
            .field("os", &self.os)
            .finish_non_exhaustive()
    }
}

impl Message for EnrollRequest {
    const KIND: &'static str = "enroll request";
    const MAX_BYTES: u32 = MAX_ENROLL_BYTES;
}

/// What the enrolling side receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub identity: Identity,
    /// Only for technicians; agents have no tier.
    pub tier: Option<Tier>,
    pub cert_pem: String,
    pub ca_pem: String,
    /// The controller's ed25519 public key for signed remediation scripts.
    pub script_public_key: [u8; 32],
    /// Unix seconds after which the certificate is no longer valid.
    pub cert_not_after_secs: u64,
}

/// Why the controller refused an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum EnrollRefusal {
    #[error("the controller does not know this token (mistyped, or made by another controller)")]
    UnknownToken,
    #[error(
        "the token expired at {} (Unix seconds); ask your admin for a new one",
        at_secs
    )]
    Expired { at_secs: u64 },
    #[error(
        "the token was already used at {} (Unix seconds); tokens are single-use",
        at_secs
    )]
    AlreadyUsed { at_secs: u64 },
    #[error("the certificate request was rejected: {reason}")]
    BadCsr { reason: String },
    #[error("the controller failed to enroll: {reason}")]
    Internal { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollReply {
    Issued(Box<Enrollment>),
    Refused(EnrollRefusal),
}

impl Message for EnrollReply {
    const KIND: &'static str = "enroll reply";
    const MAX_BYTES: u32 = MAX_ENROLL_BYTES;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrollToken {
        EnrollToken {
            kind: TokenKind::Agent,
            controller: "127.0.0.1:4433".into(),
            ca_sha256: [7; 32],
            secret: [9; 32],
        }
    }

    #[test]
    fn token_text_round_trips_with_whitespace() {
        let text = token().to_text();
        assert!(text.starts_with(TOKEN_PREFIX));
        assert_eq!(EnrollToken::parse(&format!("  {text}\n")), Ok(token()));
    }

    #[test]
    fn token_errors_are_typed() {
        assert_eq!(EnrollToken::parse(" "), Err(TokenError::Empty));
        assert_eq!(EnrollToken::parse("abc"), Err(TokenError::WrongPrefix));
        assert!(matches!(
            EnrollToken::parse("dsk1-@@@"),
            Err(TokenError::BadEncoding(_))
        ));
        assert!(matches!(
            EnrollToken::parse(&"x".repeat(5000)),
            Err(TokenError::TooLong(5000))
        ));
        let bytes = codec::encode(&token()).unwrap_or_default();
        let truncated = format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes.get(..bytes.len() - 10).unwrap_or_default())
        );
        assert!(matches!(
            EnrollToken::parse(&truncated),
            Err(TokenError::Decode(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", token());
        assert!(!shown.contains("9, 9"), "{shown}");
    }
}
