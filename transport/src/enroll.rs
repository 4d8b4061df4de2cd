//! The enrolling side of enrollment, shared by agents and technicians: pin the CA from
//! the token, send a CSR with the token's secret, receive a certificate.

use deskside_proto::limits::MAX_NAME_BYTES;
use deskside_proto::msg::enroll::{EnrollReply, EnrollRequest, EnrollToken, Enrollment};
use std::time::Duration;

use rand::seq::SliceRandom;

use crate::pki::{cert_from_pem, fingerprint, new_key_and_csr};
use crate::{TransportError, endpoint, framed, tls};

/// Issuing a certificate is quick; 30 s allows for a busy controller.
pub const ENROLL_TIMEOUT: Duration = Duration::from_secs(30);

/// A completed enrollment: what the controller issued, and the key only we hold.
#[derive(Debug)]
pub struct Enrolled {
    pub enrollment: Enrollment,
    pub key_pem: String,
}

/// Why enrollment did not complete.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the controller refused enrollment: {0}")]
    Refused(deskside_proto::msg::enroll::EnrollRefusal),
    #[error("the controller's reply does not match the pinned CA: {0}")]
    Mismatch(String),
}

/// Connects to one of `controllers`, tried in random order until one answers the hello;
/// returns the connection (and its endpoint, which must outlive it) or the last error.
pub async fn connect_any(
    controllers: &[String],
    config: quinn::ClientConfig,
    software: &str,
) -> Result<(quinn::Endpoint, quinn::Connection), TransportError> {
    let mut order = controllers.to_vec();
    order.shuffle(&mut rand::thread_rng());
    let mut last = None;
    for controller in &order {
        let attempt = async {
            let addr = endpoint::resolve(controller).await?;
            let ep = endpoint::client_endpoint(addr)?;
            let conn = endpoint::connect(&ep, addr, config.clone()).await?;
            endpoint::hello(&conn, software).await?;
            Ok::<_, TransportError>((ep, conn))
        };
        match attempt.await {
            Ok(done) => return Ok(done),
            Err(e) => {
                if order.len() > 1 {
                    tracing::warn!(%controller, error = %e, "controller unreachable; trying the others");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| TransportError::Connect {
        addr: String::new(),
        reason: "no controller address to try".into(),
    }))
}

/// Runs enrollment against one of the controllers named in `token` (in random order,
/// the next when one cannot be reached).
pub async fn enroll(
    token: &EnrollToken,
    hostname: &str,
    os: &str,
    software: &str,
) -> Result<Enrolled, EnrollError> {
    let keys = new_key_and_csr(hostname)?;
    let config = tls::pinned_client_config(token.ca_sha256)?;
    let (_ep, conn) = connect_any(&token.controllers, config, software).await?;
    let req = EnrollRequest {
        secret: token.secret,
        csr_pem: keys.csr_pem,
        hostname: truncate(hostname),
        os: truncate(os),
    };
    let reply = framed::request::<_, EnrollReply>(&conn, &req, ENROLL_TIMEOUT).await;
    endpoint::close(&conn, deskside_proto::close::DONE.into(), b"enrolled").await;
    let enrollment = match reply? {
        EnrollReply::Issued(e) => *e,
        EnrollReply::Refused(r) => return Err(EnrollError::Refused(r)),
    };
    let ca = cert_from_pem(&enrollment.ca_pem)?;
    if fingerprint(&ca) != token.ca_sha256 {
        return Err(EnrollError::Mismatch(
            "the CA certificate sent differs from the one the token names".into(),
        ));
    }
    cert_from_pem(&enrollment.cert_pem)?;
    Ok(Enrolled {
        enrollment,
        key_pem: keys.key_pem,
    })
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}
