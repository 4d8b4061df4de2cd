//! Catalog reads and script runs: the controller checks the technician's tier and the
//! parameters, sends the signed script, relays output live, and stores the run as
//! evidence on the ticket. The agent checks everything again before running anything.

use std::time::Duration;

use deskside_proto::msg::agent::{AgentReply, AgentRequest};
use deskside_proto::msg::script::{MAX_OUTPUT_BYTES, OutputStream, RunEvent, RunResult};
use deskside_proto::msg::tech::{ErrorCode, EvidenceRef, RunReport, ScriptView, TechReply};
use deskside_transport::framed;
use quinn::SendStream;
use serde::Serialize;
use tracing::{debug, info};

use super::Shared;
use super::tech::{Tech, call_failed, error, record, refused, store_error, target};
use crate::store::{NewEvent, NewEvidence};

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

/// What a script run leaves on the ticket.
#[derive(Debug, Serialize)]
struct RunRecord<'a> {
    script: &'a str,
    version: u32,
    body_sha256: String,
    tier: String,
    agent: &'a str,
    technician: &'a str,
    technician_tier: String,
    params: &'a [(String, String)],
    result: &'a RunResult,
    stdout: String,
    stderr: String,
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
) {
    let mut live = true;
    let reply = run_inner(shared, tech, agent, ticket, name, params, out, &mut live).await;
    send(out, &reply, &mut live).await;
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
    let (agent, _) = match target(shared, agent, ticket).await {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    let script_name = name.to_owned();
    let stored = match shared.store.run(move |db| db.script(&script_name)).await {
        Ok(s) => s.script,
        Err(e) => return store_error(e),
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
        requester: tech.requester(ticket),
        script: Box::new(stored),
        params: params.clone(),
    };
    if let Err(e) = framed::send(&mut to_agent, &req).await {
        return error(ErrorCode::AgentFailed, e.to_string());
    }
    let _ = to_agent.finish();
    info!(agent = %agent.id, ticket, script = name, "script run requested");

    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(u64::from(entry.timeout_secs))
        + RUN_SLACK;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let result = loop {
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
                let buf = match stream {
                    OutputStream::Stdout => &mut stdout,
                    OutputStream::Stderr => &mut stderr,
                };
                let room = MAX_OUTPUT_BYTES.saturating_sub(buf.len());
                buf.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
                send(out, &TechReply::RunOutput { stream, data }, live).await;
            }
            AgentReply::Run(RunEvent::Finished(result)) => break result,
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
    let record_json = RunRecord {
        script: name,
        version: entry.version,
        body_sha256: hex::encode(entry.body_sha256),
        tier: entry.tier.to_string(),
        agent: &agent.id,
        technician: &tech.name,
        technician_tier: tech.tier.to_string(),
        params: &params,
        result: &result,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    let evidence = match store_run(shared, tech, ticket, &agent.id, name, &record_json).await {
        Ok(e) => e,
        Err(reply) => return reply,
    };
    TechReply::RunFinished(Box::new(RunReport {
        ticket,
        agent: agent.id.clone(),
        script: name.to_owned(),
        version: entry.version,
        result,
        evidence,
    }))
}

async fn store_run(
    shared: &Shared,
    tech: &Tech,
    ticket: u64,
    agent: &str,
    name: &str,
    run: &RunRecord<'_>,
) -> Result<EvidenceRef, TechReply> {
    let bytes =
        serde_json::to_vec_pretty(run).map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
    let size = bytes.len() as u64;
    let blobs = shared.blobs.clone();
    let sha = tokio::task::spawn_blocking(move || blobs.put(&bytes))
        .await
        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
    let r = run.result;
    let detail = format!(
        "script {name} v{} on {agent}: exit {}{}{}{}",
        run.version,
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
    );
    let item = NewEvidence {
        sha256: sha.clone(),
        kind: "script_run".into(),
        size_bytes: size,
        agent_id: Some(agent.to_owned()),
    };
    let (actor, sha2) = (tech.name.clone(), sha.clone());
    let entry = shared
        .store
        .run(move |db| {
            db.add_evidence(
                ticket,
                &item,
                &NewEvent {
                    actor: &actor,
                    kind: "script",
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
        kind: "script_run".into(),
        size_bytes: size,
        agent: Some(agent.to_owned()),
        created_at_secs: entry.at_secs,
    })
}
