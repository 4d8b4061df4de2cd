//! Enrollment on a connection without a client certificate: redeem the token, certify
//! the CSR's key, record the new agent or technician.

use deskside_proto::close;
use deskside_proto::msg::enroll::{EnrollRefusal, EnrollReply, EnrollRequest, Enrollment};
use deskside_proto::msg::identity::Identity;
use deskside_transport::framed;
use quinn::Connection;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{Node, refuse};
use crate::clock::now_secs;
use crate::store::{NewAgent, Redeem, TokenFor};

pub(super) async fn serve(shared: &Node, conn: &Connection) {
    let Ok(Ok((mut send, mut recv))) =
        tokio::time::timeout(shared.request_timeout, conn.accept_bi()).await
    else {
        return refuse(conn, close::TIMED_OUT, "no enrollment request");
    };
    let req = match framed::recv_within::<EnrollRequest>(&mut recv, shared.request_timeout).await {
        Ok(r) => r,
        Err(e) => {
            let reason = format!(
                "client certificate required: this connection has no certificate, so only enrollment is possible, and this was not an enrollment request ({e})"
            );
            return refuse(conn, close::CERTIFICATE_REQUIRED, &reason);
        }
    };
    let reply = match enroll(shared, &req).await {
        Ok(e) => {
            info!(identity = %e.identity, hostname = %req.hostname, "enrolled");
            EnrollReply::Issued(Box::new(e))
        }
        Err(refusal) => {
            warn!(remote = %conn.remote_address(), hostname = %req.hostname, %refusal, "enrollment refused");
            EnrollReply::Refused(refusal)
        }
    };
    if framed::send(&mut send, &reply).await.is_ok() {
        let _ = send.finish();
        // Let the client read the reply and close; do not hold the slot for long.
        let _ = tokio::time::timeout(shared.hello_timeout, conn.closed()).await;
    }
}

async fn enroll(shared: &Node, req: &EnrollRequest) -> Result<Enrollment, EnrollRefusal> {
    let internal = |e: crate::store::StoreError| EnrollRefusal::Internal {
        reason: e.to_string(),
    };
    // Check the CSR before spending the token on it.
    shared
        .ca
        .check_csr(&req.csr_pem)
        .map_err(|e| EnrollRefusal::BadCsr {
            reason: e.to_string(),
        })?;
    let secret_sha256 = hex::encode(Sha256::digest(req.secret));
    let host = req.hostname.clone();
    let redeemed = shared
        .store
        .run(move |db| db.redeem_token(&secret_sha256, now_secs(), &host))
        .await
        .map_err(internal)?;
    let for_ = redeemed.map_err(|r| match r {
        Redeem::Unknown => EnrollRefusal::UnknownToken,
        Redeem::Expired { at } => EnrollRefusal::Expired { at_secs: at },
        Redeem::Used { at } => EnrollRefusal::AlreadyUsed { at_secs: at },
    })?;
    let identity = match &for_ {
        TokenFor::Agent => Identity::Agent { id: new_agent_id() },
        TokenFor::Technician(name) => Identity::Technician { name: name.clone() },
    };
    let issued = shared
        .ca
        .issue_client(&req.csr_pem, &identity, shared.client_validity)
        .map_err(|e| EnrollRefusal::BadCsr {
            reason: e.to_string(),
        })?;
    let tier = match &identity {
        Identity::Agent { id } => {
            let agent = NewAgent {
                id: id.clone(),
                hostname: req.hostname.clone(),
                os: req.os.clone(),
                cert_sha256: issued.cert_sha256.clone(),
                cert_pem: issued.cert_pem.clone(),
                cert_not_after: issued.not_after_secs,
            };
            shared
                .store
                .run(move |db| db.insert_agent(&agent))
                .await
                .map_err(internal)?;
            None
        }
        Identity::Technician { name } => {
            let (n, sha, until) = (
                name.clone(),
                issued.cert_sha256.clone(),
                issued.not_after_secs,
            );
            let tech = shared
                .store
                .run(move |db| {
                    db.set_technician_cert(&n, &sha, until)?;
                    db.technician(&n)
                })
                .await
                .map_err(internal)?;
            tech.map(|t| t.tier)
        }
    };
    Ok(Enrollment {
        identity,
        tier,
        cert_pem: issued.cert_pem,
        ca_pem: shared.ca.cert_pem.clone(),
        script_public_key: shared.script_public_key,
        cert_not_after_secs: issued.not_after_secs,
    })
}

/// `ag-` and 12 hex digits: short enough to read over the phone, 48 random bits.
fn new_agent_id() -> String {
    let bytes: [u8; 6] = rand::random();
    format!("ag-{}", hex::encode(bytes))
}
