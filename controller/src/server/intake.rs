//! Evidence intake: an item the agent made and signed is checked against the agent's
//! enrolled certificate, stored byte-exact in the blob store, and only then recorded on
//! the ticket (the commit is the acknowledgement).

use deskside_proto::msg::agent::SignedItem;
use deskside_proto::msg::tech::{ErrorCode, EvidenceRef, TechReply};
use sha2::{Digest, Sha256};

use super::Shared;
use super::tech::{Tech, error, store_error};
use crate::store::{NewEvent, NewEvidence};

/// Verifies `item` as coming from `agent`, stores it, and records `detail` on the ticket.
pub(super) async fn accept(
    shared: &Shared,
    tech: &Tech,
    ticket: u64,
    agent: &str,
    item: SignedItem,
    timeline_kind: &'static str,
    detail: String,
) -> Result<EvidenceRef, TechReply> {
    let digest: [u8; 32] = Sha256::digest(&item.bytes).into();
    let id = agent.to_owned();
    let cert_pem = shared
        .store
        .run(move |db| db.agent_cert(&id))
        .await
        .map_err(store_error)?;
    let cert = deskside_transport::pki::cert_from_pem(&cert_pem).map_err(|e| {
        error(
            ErrorCode::Internal,
            format!("agent {agent}'s certificate on record is unusable: {e}"),
        )
    })?;
    if let Err(e) = deskside_transport::pki::verify_evidence(&cert, &digest, &item.signature) {
        let reason = format!("evidence from {agent} rejected: {e}");
        super::tech::record(shared, ticket, &tech.name, "rejected", reason.clone()).await;
        return Err(error(ErrorCode::AgentFailed, reason));
    }
    let size = item.bytes.len() as u64;
    let blobs = shared.blobs.clone();
    let bytes = item.bytes;
    let sha = tokio::task::spawn_blocking(move || blobs.put(&bytes))
        .await
        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
    shared.metrics.evidence_bytes.inc_by(size);
    let signature = hex::encode(&item.signature);
    let new = NewEvidence {
        sha256: sha.clone(),
        kind: item.kind.clone(),
        size_bytes: size,
        agent_id: Some(agent.to_owned()),
        signature: Some(signature.clone()),
        redaction: item.redaction.clone(),
    };
    let (actor, sha2, agent_id) = (tech.name.clone(), sha.clone(), agent.to_owned());
    let entry = shared
        .store
        .run(move |db| {
            db.touch_agent(&agent_id)?;
            db.add_evidence(
                ticket,
                &new,
                &NewEvent {
                    actor: &actor,
                    kind: timeline_kind,
                    detail: &detail,
                    evidence_sha256: Some(&sha2),
                },
            )
        })
        .await
        .map_err(store_error)?;
    Ok(EvidenceRef {
        location: shared.blobs.location(&sha),
        sha256: sha,
        kind: item.kind,
        size_bytes: size,
        agent: Some(agent.to_owned()),
        created_at_secs: entry.at_secs,
        signature: Some(signature),
        redaction: item.redaction,
    })
}
