//! Enrollment: a one-time token, a CSR, and the certificate the controller issues.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Message};
use crate::error::DecodeError;
use crate::limits::{
    MAX_CONTROL_BYTES, MAX_CONTROLLER_ADDR_BYTES, MAX_CONTROLLERS, MAX_ENROLL_BYTES,
    MAX_TOKEN_CHARS,
};
use crate::msg::identity::{Identity, Tier};

/// Who a token enrolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    Agent,
    Technician,
}

/// What `deskside token create` / `tech add` print, as text: `dsk1-<base64url>` when the
/// token names one controller (readable by every release), `dsk2-<base64url>` when it
/// names several (the body of `dsk2-` is this struct's encoding).
///
/// The secret is stored on the controller only as its SHA-256; the CA fingerprint lets the
/// enrolling side pin the controller before it has any certificate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    pub kind: TokenKind,
    /// `HOST:PORT` of each controller node (1 to [`MAX_CONTROLLERS`]); the enrolling side
    /// tries them in random order.
    pub controllers: Vec<String>,
    /// SHA-256 of the CA certificate (DER).
    pub ca_sha256: [u8; 32],
    pub secret: [u8; 32],
}

impl std::fmt::Debug for EnrollToken {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollToken")
            .field("kind", &self.kind)
            .field("controllers", &self.controllers)
            .finish_non_exhaustive()
    }
}

/// The first token format (`dsk1-`): one controller address.
#[derive(Serialize, Deserialize)]
struct TokenV1 {
    kind: TokenKind,
    controller: String,
    ca_sha256: [u8; 32],
    secret: [u8; 32],
}

impl Message for TokenV1 {
    const KIND: &'static str = "enrollment token";
    const MAX_BYTES: u32 = MAX_CONTROL_BYTES;
}

impl Message for EnrollToken {
    const KIND: &'static str = "enrollment token";
    const MAX_BYTES: u32 = MAX_CONTROL_BYTES;
}

/// Whether `addr` is a controller address as tokens carry it: `HOST:PORT` with a
/// non-empty host and a port from 1 to 65535, at most [`MAX_CONTROLLER_ADDR_BYTES`].
pub fn valid_controller_addr(addr: &str) -> bool {
    addr.len() <= MAX_CONTROLLER_ADDR_BYTES
        && !addr.chars().any(|c| c.is_whitespace() || c == ',')
        && addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        })
}

/// Why a list of controller addresses cannot go into a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControllersError {
    #[error("no controller address given")]
    None,
    #[error("{0} controller addresses given; at most {MAX_CONTROLLERS} fit in a token")]
    TooMany(usize),
    #[error(
        "controller address {0:?} is not HOST:PORT as agents will reach it, e.g. 192.0.2.10:4433"
    )]
    Invalid(String),
}

/// Checks a list of controller addresses: 1 to [`MAX_CONTROLLERS`], each
/// [`valid_controller_addr`]; duplicates are dropped, the order kept.
pub fn check_controllers(addrs: &[String]) -> Result<Vec<String>, ControllersError> {
    let mut out: Vec<String> = Vec::with_capacity(addrs.len().min(MAX_CONTROLLERS));
    for a in addrs {
        if !valid_controller_addr(a) {
            let shown: String = a.chars().take(MAX_CONTROLLER_ADDR_BYTES).collect();
            return Err(ControllersError::Invalid(shown));
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
        if out.len() > MAX_CONTROLLERS {
            return Err(ControllersError::TooMany(addrs.len()));
        }
    }
    if out.is_empty() {
        return Err(ControllersError::None);
    }
    Ok(out)
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
    #[error("the token's controller addresses are unusable: {0}")]
    Controllers(#[from] ControllersError),
}

/// Prefix of the text form of a token naming one controller; the digit is the format
/// version.
pub const TOKEN_PREFIX: &str = "dsk1-";
/// Prefix of the text form of a token naming a list of controllers.
pub const TOKEN_PREFIX_V2: &str = "dsk2-";

impl EnrollToken {
    /// The text form: `dsk1-` for one controller, so that agents of every release can
    /// enroll with it; `dsk2-` for several.
    pub fn to_text(&self) -> String {
        // Fixed-size arrays and at most MAX_CONTROLLERS checked addresses stay far below
        // MAX_CONTROL_BYTES; an unchecked absurd list falls back to an empty body, which
        // no parser accepts.
        let (prefix, bytes) = match self.controllers.as_slice() {
            [one] => (
                TOKEN_PREFIX,
                codec::encode(&TokenV1 {
                    kind: self.kind,
                    controller: one.clone(),
                    ca_sha256: self.ca_sha256,
                    secret: self.secret,
                }),
            ),
            _ => (TOKEN_PREFIX_V2, codec::encode(self)),
        };
        format!(
            "{prefix}{}",
            URL_SAFE_NO_PAD.encode(bytes.unwrap_or_default())
        )
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
        let decode = |body: &str| {
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|e| TokenError::BadEncoding(e.to_string()))
        };
        let (kind, controllers, ca_sha256, secret) =
            if let Some(body) = text.strip_prefix(TOKEN_PREFIX) {
                let t: TokenV1 = codec::decode(&decode(body)?)?;
                (t.kind, vec![t.controller], t.ca_sha256, t.secret)
            } else if let Some(body) = text.strip_prefix(TOKEN_PREFIX_V2) {
                let t: EnrollToken = codec::decode(&decode(body)?)?;
                (t.kind, t.controllers, t.ca_sha256, t.secret)
            } else {
                return Err(TokenError::WrongPrefix);
            };
        Ok(EnrollToken {
            kind,
            controllers: check_controllers(&controllers)?,
            ca_sha256,
            secret,
        })
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
            controllers: vec!["127.0.0.1:4433".into()],
            ca_sha256: [7; 32],
            secret: [9; 32],
        }
    }

    fn v1_bytes() -> Vec<u8> {
        codec::encode(&TokenV1 {
            kind: TokenKind::Agent,
            controller: "127.0.0.1:4433".into(),
            ca_sha256: [7; 32],
            secret: [9; 32],
        })
        .unwrap_or_default()
    }

    #[test]
    fn a_token_issued_before_lists_still_parses() {
        // The text form issued by releases with one controller address per token.
        let old = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(v1_bytes()));
        assert_eq!(EnrollToken::parse(&old), Ok(token()));
        // And a one-address token is still written that way, for older agents.
        assert_eq!(token().to_text(), old);
    }

    #[test]
    fn a_list_of_controllers_round_trips_as_version_2() {
        let mut t = token();
        t.controllers = vec![
            "ctl-a.example:4433".into(),
            "ctl-b.example:4433".into(),
            "[2001:db8::1]:4433".into(),
        ];
        let text = t.to_text();
        assert!(text.starts_with(TOKEN_PREFIX_V2), "{text}");
        assert_eq!(EnrollToken::parse(&text), Ok(t.clone()));
        // Eight of the longest addresses still fit the text limit.
        let host = "h".repeat(MAX_CONTROLLER_ADDR_BYTES - 6);
        t.controllers = (0..MAX_CONTROLLERS)
            .map(|i| format!("{host}:{}", 4000 + i))
            .collect();
        let text = t.to_text();
        assert!(text.len() <= MAX_TOKEN_CHARS, "{}", text.len());
        assert_eq!(EnrollToken::parse(&text), Ok(t));
    }

    #[test]
    fn a_token_with_a_bad_or_oversized_list_is_refused() {
        let text = |controllers: Vec<String>| {
            let bytes = codec::encode(&EnrollToken {
                kind: TokenKind::Agent,
                controllers,
                ca_sha256: [7; 32],
                secret: [9; 32],
            })
            .unwrap_or_default();
            format!("{TOKEN_PREFIX_V2}{}", URL_SAFE_NO_PAD.encode(bytes))
        };
        assert_eq!(
            EnrollToken::parse(&text(vec![])),
            Err(TokenError::Controllers(ControllersError::None))
        );
        assert!(matches!(
            EnrollToken::parse(&text(vec!["no-port".into()])),
            Err(TokenError::Controllers(ControllersError::Invalid(_)))
        ));
        let nine = (0..9).map(|i| format!("10.0.0.{i}:4433")).collect();
        assert_eq!(
            EnrollToken::parse(&text(nine)),
            Err(TokenError::Controllers(ControllersError::TooMany(9)))
        );
    }

    #[test]
    fn controller_lists_are_checked_and_deduplicated() {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            check_controllers(&list(&["a:1", "b:2", "a:1"])),
            Ok(list(&["a:1", "b:2"]))
        );
        for bad in [
            "",
            ":4433",
            "host:",
            "host:0",
            "host:70000",
            "a b:1",
            "a,b:1",
        ] {
            assert!(!valid_controller_addr(bad), "{bad:?}");
        }
        assert!(valid_controller_addr("[::1]:4433"));
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
        let bytes = v1_bytes();
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
