//! Catalog reads and script runs: the controller checks the technician's tier and the
//! parameters, sends the signed script, relays output live, and stores the run as
//! evidence on the ticket. The agent checks everything again before running anything.

use std::time::Duration;

use deskside_proto::evidence::{self, EvidenceKind};
use deskside_proto::msg::agent::{AgentReply, AgentRequest, NoticeAck};
use deskside_proto::msg::script::{RunEvent, RunRecord};
use deskside_proto::msg::tech::{ErrorCode, RunReport, ScriptView, TechReply};
use deskside_transport::framed;
use quinn::SendStream;
use tracing::{debug, info};

use super::Shared;
use super::tech::{Tech, call_failed, error, record, refused, store_error, target_and};

/// Beyond the script's own timeout, time for the agent to verify, start and report.
const RUN_SLACK: Duration = Duration::from_secs(30);

pub(super) async fn show(shared: &Shared, name: String) -> TechReply {
    match shared.store.run(move |db| db.script(&name)).await {
        Ok(s) => TechReply::Script(Box::new(ScriptView {
            body_sha256: hex::encode(s.script.entry.body_sha256),
            entry: s.script.entry,
            body: s.script.body,
            added_at_secs: s.added_at,
        })),
        Err(e) => store_error(e),
    }
}

async fn send(out: &mut SendStream, reply: &TechReply, live: &mut bool) {
    // A technician who goes away does not stop the run; the evidence is still stored.
    if *live && framed::send(out, reply).await.is_err() {
        debug!("technician went away during a run");
        *live = false;
    }
}

pub(super) async fn run(
    shared: &Shared,
    tech: &Tech,
    agent: &str,
    ticket: u64,
    name: &str,
    params: Vec<(String, String)>,
    out: &mut SendStream,
) -> String {
    let mut live = true;
    let reply = run_inner(shared, tech, agent, ticket, name, params, out, &mut live).await;
    send(out, &reply, &mut live).await;
    super::tech::outcome_of(&reply)
}

#[allow(clippy::too_many_arguments)]
async fn run_inner(
    shared: &Shared,
    tech: &Tech,
    agent: &str,
    ticket: u64,
    name: &str,
    params: Vec<(String, String)>,
    out: &mut SendStream,
    live: &mut bool,
) -> TechReply {
    let script_name = name.to_owned();
    let found = target_and(shared, agent, ticket, move |db| db.script(&script_name)).await;
    let (agent, stored) = match found {
        Ok((agent, _, stored)) => (agent, stored.script),
        Err(reply) => return reply,
    };
    let entry = stored.entry.clone();
    if entry.tier > tech.tier {
        let detail = format!(
            "{} ({}) may not run {} script {name}",
            tech.name, tech.tier, entry.tier
        );
        record(shared, ticket, &tech.name, "refused", detail.clone()).await;
        return error(
            ErrorCode::Forbidden,
            format!("{detail}; escalate the ticket to {}", entry.tier),
        );
    }
    if let Err(e) = entry.resolve_params(&params) {
        return error(ErrorCode::BadRequest, format!("script {name}: {e}"));
    }
    let (mut to_agent, mut from_agent) = match shared.agents.open(&agent.id).await {
        Ok(s) => s,
        Err(e) => return call_failed(e),
    };
    let req = AgentRequest::RunScript {
        requester: tech.requester(shared, &agent.id, ticket),
        script: Box::new(stored),
        params: params.clone(),
    };
    if let Err(e) = framed::send(&mut to_agent, &req).await {
        return error(ErrorCode::AgentFailed, e.to_string());
    }
    info!(agent = %agent.id, ticket, script = name, "script run requested");

    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(u64::from(entry.timeout_secs))
        + RUN_SLACK;
    let mut finished = None;
    let (result, item) = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = match framed::recv_within::<AgentReply>(&mut from_agent, left).await {
            Ok(r) => r,
            Err(e) => {
                let detail = format!("script {name} on {}: {e}", agent.id);
                record(shared, ticket, &tech.name, "failed", detail.clone()).await;
                return error(ErrorCode::AgentFailed, detail);
            }
        };
        match reply {
            AgentReply::Run(RunEvent::Output { stream, data }) => {
                send(out, &TechReply::RunOutput { stream, data }, live).await;
            }
            AgentReply::Run(RunEvent::Finished(result)) => finished = Some(result),
            AgentReply::Evidence(item) => match finished.take() {
                Some(result) => break (result, *item),
                None => {
                    return error(
                        ErrorCode::AgentFailed,
                        "the agent sent a run record before the run finished",
                    );
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
                return refused(&agent.id, &r);
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
                return error(ErrorCode::AgentFailed, reason);
            }
            other => {
                return error(
                    ErrorCode::AgentFailed,
                    format!("unexpected reply {other:?}"),
                );
            }
        }
    };
    let record: RunRecord = match evidence::open_bytes(&item.bytes) {
        Ok(r) => r,
        Err(e) => {
            let reason = format!("the agent's run record is unreadable: {e}");
            return unusable(&mut to_agent, reason).await;
        }
    };
    if item.kind != EvidenceKind::ScriptRun
        || record.script != name
        || record.ticket != ticket
        || record.result != result
    {
        let reason = "the agent's run record does not match the run it reported".to_owned();
        return unusable(&mut to_agent, reason).await;
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
            super::intake::acknowledge(&mut to_agent, &refused.ack()).await;
            return refused.reply();
        }
    };
    super::intake::acknowledge(&mut to_agent, &NoticeAck::Recorded).await;
    TechReply::RunFinished(Box::new(RunReport {
        ticket,
        agent: agent.id.clone(),
        script: name.to_owned(),
        version: entry.version,
        result,
        evidence,
    }))
}

/// Refuses a run record for good (the agent drops it from its spool) and says why.
async fn unusable(to_agent: &mut SendStream, reason: String) -> TechReply {
    let ack = NoticeAck::Rejected {
        reason: reason.clone(),
    };
    super::intake::acknowledge(to_agent, &ack).await;
    error(ErrorCode::AgentFailed, reason)
}
