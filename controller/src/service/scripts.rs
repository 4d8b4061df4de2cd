//! Catalog reads and script runs: the controller checks the technician's tier and the
//! parameters, sends the signed script, relays output live, and stores the run as
//! evidence on the ticket. The agent checks everything again before running anything.

use std::time::Duration;

use deskside_proto::evidence::{self, EvidenceKind};
use deskside_proto::msg::agent::{AgentReply, AgentRequest, NoticeAck};
use deskside_proto::msg::script::{CatalogEntry, RunEvent, RunRecord};
use deskside_proto::msg::tech::{ErrorCode, RunReport, ScriptView, TechReply};
use tracing::info;

use super::common::{Failure, Principal, ReplySink, Shared, admit, record, target_and};
use super::link::AgentStream;

/// Beyond the script's own timeout, time for the agent to verify, start and report.
const RUN_SLACK: Duration = Duration::from_secs(30);

/// The signed catalog: every script a technician may ask for, at any tier.
pub(crate) async fn list(shared: &Shared, who: &Principal) -> Result<Vec<CatalogEntry>, Failure> {
    admit(shared, who, None).await?;
    Ok(shared.store.run(|db| db.scripts()).await?)
}

/// One catalog script with its body.
pub(crate) async fn show(
    shared: &Shared,
    who: &Principal,
    name: String,
) -> Result<ScriptView, Failure> {
    admit(shared, who, None).await?;
    let s = shared.store.run(move |db| db.script(&name)).await?;
    Ok(ScriptView {
        body_sha256: hex::encode(s.script.entry.body_sha256),
        entry: s.script.entry,
        body: s.script.body,
        added_at_secs: s.added_at,
    })
}

/// A catalog script to run on an agent for a ticket.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// The agent's id or a hostname that names exactly one agent.
    pub agent: String,
    pub ticket: u64,
    pub script: String,
    /// Typed parameters by name, as the technician gave them (checked here and again
    /// on the agent).
    pub params: Vec<(String, String)>,
}

/// Runs a catalog script on the agent: the technician's tier and the parameters are
/// checked, the signed script is sent, its output streams to `out` as it comes, and the
/// agent's signed run record is stored as evidence on the ticket. A technician who goes
/// away does not stop the run; the evidence is still stored.
pub(crate) async fn run<S: ReplySink>(
    shared: &Shared,
    tech: &Principal,
    run: Run,
    out: &mut S,
) -> Result<RunReport, Failure> {
    let Run {
        agent,
        ticket,
        script,
        params,
    } = run;
    admit(shared, tech, Some(ticket)).await?;
    let name = script.as_str();
    let script_name = name.to_owned();
    let (agent, _, stored) =
        target_and(shared, &agent, ticket, move |db| db.script(&script_name)).await?;
    let stored = stored.script;
    let entry = stored.entry.clone();
    if entry.tier > tech.tier {
        let detail = format!(
            "{} ({}) may not run {} script {name}",
            tech.name, tech.tier, entry.tier
        );
        record(shared, ticket, &tech.name, "refused", detail.clone()).await;
        return Err(Failure::new(
            ErrorCode::Forbidden,
            format!("{detail}; escalate the ticket to {}", entry.tier),
        ));
    }
    if let Err(e) = entry.resolve_params(&params) {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            format!("script {name}: {e}"),
        ));
    }
    let mut stream = shared.agents.open(&agent.id).await?;
    let req = AgentRequest::RunScript {
        requester: tech.requester(shared, &agent.id, ticket),
        script: Box::new(stored),
        params: params.clone(),
    };
    if let Err(e) = stream.send(&req).await {
        return Err(Failure::new(ErrorCode::AgentFailed, e.to_string()));
    }
    info!(agent = %agent.id, ticket, script = name, "script run requested");

    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(u64::from(entry.timeout_secs))
        + RUN_SLACK;
    let mut finished = None;
    let (result, item) = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = match stream.reply_within(left).await {
            Ok(r) => r,
            Err(e) => {
                let detail = format!("script {name} on {}: {e}", agent.id);
                record(shared, ticket, &tech.name, "failed", detail.clone()).await;
                return Err(Failure::new(ErrorCode::AgentFailed, detail));
            }
        };
        match reply {
            AgentReply::Run(RunEvent::Output { stream, data }) => {
                out.send(&TechReply::RunOutput { stream, data }).await;
            }
            AgentReply::Run(RunEvent::Finished(result)) => finished = Some(result),
            AgentReply::Evidence(item) => match finished.take() {
                Some(result) => break (result, *item),
                None => {
                    return Err(Failure::new(
                        ErrorCode::AgentFailed,
                        "the agent sent a run record before the run finished",
                    ));
                }
            },
            AgentReply::Refused(r) => {
                record(
                    shared,
                    ticket,
                    &tech.name,
                    "refused",
                    format!("script {name} refused by {}: {}", agent.id, r.reason),
                )
                .await;
                return Err(Failure::refused_by(&agent.id, &r));
            }
            AgentReply::Failed { reason } => {
                record(
                    shared,
                    ticket,
                    &tech.name,
                    "failed",
                    format!("script {name} on {}: {reason}", agent.id),
                )
                .await;
                return Err(Failure::new(ErrorCode::AgentFailed, reason));
            }
            other => {
                return Err(Failure::new(
                    ErrorCode::AgentFailed,
                    format!("unexpected reply {other:?}"),
                ));
            }
        }
    };
    let record: RunRecord = match evidence::open_bytes(&item.bytes) {
        Ok(r) => r,
        Err(e) => {
            let reason = format!("the agent's run record is unreadable: {e}");
            return Err(unusable(stream.as_mut(), reason).await);
        }
    };
    if item.kind != EvidenceKind::ScriptRun
        || record.script != name
        || record.ticket != ticket
        || record.result != result
    {
        let reason = "the agent's run record does not match the run it reported".to_owned();
        return Err(unusable(stream.as_mut(), reason).await);
    }
    let r = &result;
    let detail = format!(
        "script {name} v{} on {}: exit {}{}{}{}{}",
        record.version,
        agent.id,
        r.exit_code.map_or_else(
            || format!("by signal {}", r.signal.unwrap_or(0)),
            |c| c.to_string()
        ),
        if r.timed_out { ", timed out" } else { "" },
        if r.cancelled {
            ", cancelled when the session ended"
        } else {
            ""
        },
        if r.truncated {
            ", output truncated"
        } else {
            ""
        },
        match &record.grant {
            Some(g) => format!(" (session {g})"),
            None => " (allowed unattended by the machine's policy)".to_owned(),
        },
    );
    let evidence = match super::intake::accept(
        shared, &tech.name, ticket, &agent.id, item, "script", detail,
    )
    .await
    {
        Ok(e) => e,
        Err(refused) => {
            stream.acknowledge(&refused.ack()).await;
            return Err(refused.failure());
        }
    };
    stream.acknowledge(&NoticeAck::Recorded).await;
    Ok(RunReport {
        ticket,
        agent: agent.id.clone(),
        script: name.to_owned(),
        version: entry.version,
        result,
        evidence,
    })
}

/// Refuses a run record for good (the agent drops it from its spool) and says why.
async fn unusable(stream: &mut dyn AgentStream, reason: String) -> Failure {
    let ack = NoticeAck::Rejected {
        reason: reason.clone(),
    };
    stream.acknowledge(&ack).await;
    Failure::new(ErrorCode::AgentFailed, reason)
}
