//! Diagnostics: the agent takes a snapshot, the controller stores it as evidence on the
//! ticket and returns it with the findings. Every outcome lands on the ticket's timeline.

use deskside_proto::evidence::{self, EvidenceKind};
use deskside_proto::findings;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, NoticeAck, SignedItem};
use deskside_proto::msg::diag::Snapshot;
use deskside_proto::msg::tech::{DiagReport, ErrorCode};
use tracing::{Instrument, info, info_span};

use super::common::{DIAG_TIMEOUT, Failure, Principal, Shared, admit, record, target};
use crate::clock::now_ms;

/// Asks the agent for a snapshot, stores it as evidence on the ticket, and returns it
/// with findings. Every outcome lands on the ticket's timeline.
pub(crate) async fn pull(
    shared: &Shared,
    tech: &Principal,
    agent: &str,
    ticket: u64,
) -> Result<DiagReport, Failure> {
    admit(shared, tech, Some(ticket)).await?;
    let (agent, _) = target(shared, agent, ticket).await?;
    let span = info_span!("diagnostics", agent = %agent.id, ticket);
    async {
        let req = AgentRequest::Diagnostics {
            requester: tech.requester(shared, &agent.id, ticket),
        };
        let sent_ms = now_ms();
        let outcome = shared.agents.call_open(&agent.id, &req, DIAG_TIMEOUT).await;
        let rtt_ms = shared
            .agents
            .round_trip(&agent.id)
            .map_or(0, |rtt| u64::try_from(rtt.as_millis()).unwrap_or(0));
        let (kind, detail, reply) = match outcome {
            Ok((AgentReply::Snapshot(item), mut stream)) => {
                let (reply, ack) =
                    store_snapshot(shared, tech, &agent.id, ticket, *item, sent_ms + rtt_ms / 2)
                        .await;
                stream.acknowledge(&ack).await;
                return reply;
            }
            Ok((AgentReply::Refused(refusal), _)) => (
                "refused",
                format!(
                    "diagnostics requested by {} refused by the agent: {}",
                    tech.name, refusal.reason
                ),
                Failure::refused_by(&agent.id, &refusal),
            ),
            Ok((AgentReply::Failed { reason }, _)) => (
                "failed",
                format!(
                    "diagnostics requested by {} failed on the agent: {reason}",
                    tech.name
                ),
                Failure::new(
                    ErrorCode::AgentFailed,
                    format!("agent {} failed: {reason}", agent.id),
                ),
            ),
            Ok((other, _)) => (
                "failed",
                format!(
                    "diagnostics requested by {}: unexpected reply {other:?}",
                    tech.name
                ),
                Failure::new(ErrorCode::AgentFailed, "the agent sent an unexpected reply"),
            ),
            Err(e) => (
                "failed",
                format!("diagnostics requested by {}: {e}", tech.name),
                Failure::from(e),
            ),
        };
        info!(outcome = kind, %detail, "diagnostics not stored");
        record(shared, ticket, &tech.name, kind, detail).await;
        Err(reply)
    }
    .instrument(span)
    .await
}

async fn store_snapshot(
    shared: &Shared,
    tech: &Principal,
    agent: &str,
    ticket: u64,
    item: SignedItem,
    agent_started_ms: u64,
) -> (Result<DiagReport, Failure>, NoticeAck) {
    let unusable = |reason: String| {
        let ack = NoticeAck::Rejected {
            reason: reason.clone(),
        };
        (Err(Failure::new(ErrorCode::AgentFailed, reason)), ack)
    };
    if item.kind != EvidenceKind::Snapshot {
        return unusable(format!(
            "agent {agent} sent a {} where a snapshot was due",
            item.kind
        ));
    }
    let mut snapshot: Snapshot = match evidence::open(item.kind, &item.bytes) {
        Ok(s) => s,
        Err(e) => return unusable(format!("agent {agent} sent an unreadable snapshot: {e}")),
    };
    // The agent stamped the snapshot with its own clock when it started taking it;
    // the controller knows when that was on its clock, give or take half a round trip.
    let offset = i128::from(snapshot.collected_at_ms) - i128::from(agent_started_ms);
    snapshot.time.controller_offset_ms = i64::try_from(offset).ok();
    // The stored item is the agent's signed bytes; the technician also gets the findings
    // only the controller can make (clock offset).
    snapshot.findings = findings::evaluate(&snapshot);
    let worst = snapshot
        .findings
        .first()
        .map(|f| f.severity.to_string())
        .unwrap_or_else(|| "no".into());
    let detail = format!(
        "diagnostics snapshot from {agent} ({}), requested by {}: {} findings, worst {worst}; clock offset {} ms{}",
        snapshot.host.hostname,
        tech.name,
        snapshot.findings.len(),
        snapshot.time.controller_offset_ms.unwrap_or(0),
        if item.redaction.is_empty() {
            String::new()
        } else {
            format!("; redacted on the machine: {}", item.redaction.join(","))
        }
    );
    let evidence =
        match super::intake::accept(shared, &tech.name, ticket, agent, item, "snapshot", detail)
            .await
        {
            Ok(e) => e,
            Err(refused) => return (Err(refused.failure()), refused.ack()),
        };
    info!(sha256 = %evidence.sha256, findings = snapshot.findings.len(), "snapshot stored");
    // The fleet view filters on each machine's newest worst finding.
    let worst_now = snapshot.findings.iter().map(|f| f.severity).max();
    let (id, taken) = (agent.to_owned(), snapshot.collected_at_ms / 1000);
    if let Err(e) = shared
        .store
        .run(move |db| {
            db.set_agent_findings(&id, worst_now.map(|s| s.to_string()).as_deref(), taken)
        })
        .await
    {
        tracing::warn!(error = %e, "remembering the agent's worst finding failed");
    }
    let report = DiagReport {
        ticket,
        agent: agent.to_owned(),
        snapshot,
        evidence,
    };
    (Ok(report), NoticeAck::Recorded)
}
