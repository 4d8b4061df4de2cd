//! Evidence intake: an item the agent made and signed is checked against the agent's
//! enrolled certificate, stored byte-exact in the blob store, and only then recorded on
//! the ticket under the item's idempotency key — the commit is the acknowledgement, and
//! a redelivered key is acknowledged again without being recorded twice.
//!
//! Items arrive two ways: as the reply to a request ([`accept`], then [`acknowledge`] on
//! the request's stream), or later from the agent's spool when that reply or its
//! acknowledgement was lost ([`late`]).

use deskside_proto::evidence::{self, EvidenceKind};
use deskside_proto::msg::agent::{NoticeAck, Requester, SignedItem, valid_key};
use deskside_proto::msg::diag::Snapshot;
use deskside_proto::msg::script::RunRecord;
use deskside_proto::msg::tech::{ErrorCode, EvidenceRef};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::common::{Failure, Shared, record};
use crate::store::{Delivered, NewEvent, NewEvidence, StoreError};

/// Why an item was not stored, and whether the agent should offer it again.
#[derive(Debug)]
pub(super) struct Refused {
    pub code: ErrorCode,
    pub reason: String,
    /// Delivering it again cannot help (bad signature, no such ticket).
    pub permanent: bool,
}

impl Refused {
    fn permanent(code: ErrorCode, reason: String) -> Refused {
        Refused {
            code,
            reason,
            permanent: true,
        }
    }

    fn transient(reason: String) -> Refused {
        warn!(%reason, "evidence not stored this time");
        Refused {
            code: ErrorCode::Internal,
            reason,
            permanent: false,
        }
    }

    pub fn failure(&self) -> Failure {
        Failure::new(self.code, self.reason.clone())
    }

    pub fn ack(&self) -> NoticeAck {
        if self.permanent {
            NoticeAck::Rejected {
                reason: self.reason.clone(),
            }
        } else {
            NoticeAck::Retry {
                reason: self.reason.clone(),
            }
        }
    }
}

fn from_store(e: StoreError) -> Refused {
    match e {
        StoreError::NotFound(m) => Refused::permanent(ErrorCode::NotFound, m),
        other => Refused::transient(other.to_string()),
    }
}

/// Verifies `item` as coming from `agent`, stores it, and records `detail` on the ticket
/// with `actor` as who asked for it. A key recorded before returns the earlier record.
pub(super) async fn accept(
    shared: &Shared,
    actor: &str,
    ticket: u64,
    agent: &str,
    item: SignedItem,
    timeline_kind: &'static str,
    detail: String,
) -> Result<EvidenceRef, Refused> {
    if !valid_key(&item.key) {
        return Err(Refused::permanent(
            ErrorCode::AgentFailed,
            format!("evidence from {agent} rejected: malformed idempotency key"),
        ));
    }
    if item.kind.controller_made() {
        return Err(Refused::permanent(
            ErrorCode::AgentFailed,
            format!(
                "evidence from {agent} rejected: {:?} items are made by the controller, never by an agent",
                item.kind.as_str()
            ),
        ));
    }
    let digest: [u8; 32] = Sha256::digest(&item.bytes).into();
    let id = agent.to_owned();
    let cert_pem = shared
        .store
        .run(move |db| db.agent_cert(&id))
        .await
        .map_err(from_store)?;
    let cert = deskside_transport::pki::cert_from_pem(&cert_pem).map_err(|e| {
        Refused::transient(format!(
            "agent {agent}'s certificate on record is unusable: {e}"
        ))
    })?;
    if let Err(e) = deskside_transport::pki::verify_evidence(&cert, &digest, &item.signature) {
        let reason = format!("evidence from {agent} rejected: {e}");
        record(shared, ticket, actor, "rejected", reason.clone()).await;
        return Err(Refused::permanent(ErrorCode::AgentFailed, reason));
    }
    let size = item.bytes.len() as u64;
    let sha = hex::encode(digest);
    let blobs = shared.blobs.clone();
    let bytes = item.bytes;
    // The blob and the row are made durable at the same time, and the item is
    // acknowledged only once both are. A crash between the two leaves no
    // acknowledgement, so the agent delivers again: the blob is written again and the
    // row, already there, is matched by its key.
    let put = tokio::task::spawn_blocking(move || blobs.put(&bytes));
    let signature = hex::encode(&item.signature);
    let new = NewEvidence {
        sha256: sha.clone(),
        kind: item.kind,
        size_bytes: size,
        agent_id: Some(agent.to_owned()),
        signature: Some(signature.clone()),
        redaction: item.redaction.clone(),
    };
    let (actor, sha2, agent_id, key) = (
        actor.to_owned(),
        sha.clone(),
        agent.to_owned(),
        item.key.clone(),
    );
    let commit = shared.store.run(move |db| {
        db.add_delivered_evidence(
            &agent_id,
            &key,
            ticket,
            &new,
            &NewEvent {
                actor: &actor,
                kind: timeline_kind,
                detail: &detail,
                evidence_sha256: Some(&sha2),
            },
        )
    });
    let (put, delivered) = tokio::join!(put, commit);
    put.map_err(|e| Refused::transient(e.to_string()))?
        .map_err(|e| Refused::transient(e.to_string()))?;
    let delivered = delivered.map_err(from_store)?;
    let at_secs = recorded(shared, agent, &item.key, delivered, size).await;
    Ok(EvidenceRef {
        location: shared.blobs.location(&sha),
        sha256: sha,
        kind: item.kind.to_string(),
        size_bytes: size,
        agent: Some(agent.to_owned()),
        created_at_secs: at_secs,
        signature: Some(signature),
        redaction: item.redaction,
    })
}

/// After an agent's delivery is recorded: the agent was seen now, new evidence counts
/// toward the stored bytes, and the answer is when the item was first recorded.
pub(super) async fn recorded(
    shared: &Shared,
    agent: &str,
    key: &str,
    delivered: Delivered,
    bytes: u64,
) -> u64 {
    shared.seen.touch(agent).await;
    match delivered {
        Delivered::New(entry) => {
            shared.metrics.evidence_bytes.inc_by(bytes);
            entry.at_secs
        }
        Delivered::Duplicate {
            received_at_secs, ..
        } => {
            info!(
                agent,
                key, "evidence delivered again; recorded once already"
            );
            received_at_secs
        }
    }
}

/// Evidence delivered from the agent's spool after its direct delivery was lost: stored
/// on the ticket the original request named, with a timeline entry that says so.
pub(super) async fn late(
    shared: &Shared,
    agent: &str,
    requester: &Requester,
    item: SignedItem,
) -> NoticeAck {
    if let Err(reason) = check_request_key(
        shared,
        agent,
        &requester.request_key,
        requester.ticket,
        &requester.technician,
        &format!("{} evidence", item.kind),
    ) {
        return NoticeAck::Rejected { reason };
    }
    let (kind, detail) = match describe_late(agent, requester, &item) {
        Ok(v) => v,
        Err(reason) => return NoticeAck::Rejected { reason },
    };
    let actor = requester.technician.clone();
    match accept(shared, &actor, requester.ticket, agent, item, kind, detail).await {
        Ok(evidence) => {
            info!(agent, ticket = requester.ticket, sha256 = %evidence.sha256, "late evidence stored");
            NoticeAck::Recorded
        }
        Err(refused) => refused.ack(),
    }
}

/// Checks that `key` is one the controller issued to `agent` for `ticket` and
/// `technician`. A refusal is final: it is logged as an audit event, counted in
/// `deskside_deliveries_refused_total`, and its reason (naming `what`) goes back to the
/// agent, which drops the item. Nothing is written to the ticket the agent named: an
/// agent must not be able to write on tickets it was never asked about, not even
/// refusals.
pub(super) fn check_request_key(
    shared: &Shared,
    agent: &str,
    key: &str,
    ticket: u64,
    technician: &str,
    what: &str,
) -> Result<(), String> {
    let now = crate::clock::now_secs();
    let Err(why) = shared
        .request_keys
        .check(key, agent, ticket, technician, now)
    else {
        return Ok(());
    };
    let reason = format!(
        "{what} from agent {agent} for ticket {ticket} refused: {why}; the controller keeps only what it asked that agent for on that ticket"
    );
    warn!(
        audit = true,
        agent,
        ticket,
        technician,
        %reason,
        "delivery refused: request key"
    );
    shared
        .metrics
        .deliveries_refused
        .get_or_create(&crate::metrics::ReasonLabel {
            reason: "request_key".into(),
        })
        .inc();
    Err(reason)
}

/// The timeline kind and text for an item that arrives late.
fn describe_late(
    agent: &str,
    requester: &Requester,
    item: &SignedItem,
) -> Result<(&'static str, String), String> {
    let tail = format!(
        "requested by {}; delivered from the agent's spool after the link was lost",
        requester.technician
    );
    match item.kind {
        EvidenceKind::Snapshot => {
            let s: Snapshot = evidence::open(item.kind, &item.bytes)
                .map_err(|e| format!("agent {agent} sent an unreadable snapshot: {e}"))?;
            Ok((
                "snapshot",
                format!(
                    "diagnostics snapshot from {agent} ({}), {tail}: {} findings",
                    s.host.hostname,
                    s.findings.len()
                ),
            ))
        }
        EvidenceKind::ScriptRun => {
            let r: RunRecord = evidence::open(item.kind, &item.bytes)
                .map_err(|e| format!("agent {agent} sent an unreadable run record: {e}"))?;
            if r.ticket != requester.ticket {
                return Err(format!(
                    "agent {agent}'s run record names ticket {} but was delivered for ticket {}",
                    r.ticket, requester.ticket
                ));
            }
            Ok((
                "script",
                format!(
                    "script {} v{} on {agent}: exit {}, {tail}",
                    r.script,
                    r.version,
                    r.result
                        .exit_code
                        .map_or_else(|| "by signal".to_owned(), |c| c.to_string())
                ),
            ))
        }
        other if other.controller_made() => Err(format!(
            "evidence from {agent} rejected: {:?} items are made by the controller, never by an agent",
            other.as_str()
        )),
        other => Err(format!(
            "agent {agent} sent evidence of unknown kind {:?}",
            other.as_str()
        )),
    }
}
