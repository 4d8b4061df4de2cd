//! Certificate renewal over the live link: a client whose certificate nears expiry sends
//! a CSR for the key it already holds; the controller certifies the same identity again
//! and records the new certificate while keeping the one presented on this connection
//! acceptable until it expires (see `store::certs`). No user action, no new token, and
//! the CA the client pinned stays the same.

use deskside_proto::msg::agent::NoticeAck;
use deskside_proto::msg::identity::Identity;
use deskside_proto::msg::tech::ErrorCode;
use deskside_transport::pki;
use rustls_pki_types::CertificateDer;
use tracing::{info, warn};

use super::common::{Failure, Principal, Shared, admit};
use crate::ca::Issued;

/// Certifies `identity`'s key again; the certificate `presented` on the connection
/// proves the key.
async fn issue(
    shared: &Shared,
    presented: Option<&CertificateDer<'static>>,
    identity: &Identity,
    csr_pem: &str,
) -> Result<(Issued, String), String> {
    let presented =
        presented.ok_or("renewal needs the client's current certificate on the connection")?;
    let fingerprint = hex::encode(pki::fingerprint(presented));
    shared
        .ca
        .renew_client(csr_pem, identity, presented, shared.client_validity)
        .map(|issued| (issued, fingerprint))
        .map_err(|e| e.to_string())
}

pub(super) async fn agent(
    shared: &Shared,
    presented: Option<&CertificateDer<'static>>,
    id: &str,
    csr_pem: &str,
) -> NoticeAck {
    let identity = Identity::Agent { id: id.to_owned() };
    let (issued, presented) = match issue(shared, presented, &identity, csr_pem).await {
        Ok(v) => v,
        Err(reason) => {
            warn!(agent = id, %reason, "certificate renewal refused");
            return NoticeAck::Rejected { reason };
        }
    };
    let (agent, i) = (id.to_owned(), issued.clone());
    let stored = shared
        .store
        .run(move |db| {
            db.renew_agent_cert(
                &agent,
                &presented,
                &i.cert_sha256,
                &i.cert_pem,
                i.not_after_secs,
            )
        })
        .await;
    match stored {
        Ok(()) => {
            info!(
                agent = id,
                not_after = issued.not_after_secs,
                "agent certificate renewed"
            );
            NoticeAck::Renewed {
                cert_pem: issued.cert_pem,
                not_after_secs: issued.not_after_secs,
            }
        }
        Err(e) => NoticeAck::Retry {
            reason: e.to_string(),
        },
    }
}

/// `deskside renew` for technician `who`, over a connection that presented their
/// current certificate.
pub(super) async fn technician(
    shared: &Shared,
    who: &Principal,
    csr_pem: &str,
) -> Result<(String, u64), Failure> {
    admit(shared, who, None).await?;
    let name = who.name.as_str();
    let identity = Identity::Technician {
        name: name.to_owned(),
    };
    let (issued, presented) = issue(shared, who.certificate.as_ref(), &identity, csr_pem)
        .await
        .map_err(|reason| Failure::new(ErrorCode::BadRequest, reason))?;
    let (tech, i) = (name.to_owned(), issued.clone());
    let stored = shared
        .store
        .run(move |db| {
            db.renew_technician_cert(&tech, &presented, &i.cert_sha256, i.not_after_secs)
        })
        .await;
    match stored {
        Ok(()) => {
            info!(
                technician = name,
                not_after = issued.not_after_secs,
                "technician certificate renewed"
            );
            Ok((issued.cert_pem, issued.not_after_secs))
        }
        Err(e) => Err(Failure::new(ErrorCode::Internal, e.to_string())),
    }
}
