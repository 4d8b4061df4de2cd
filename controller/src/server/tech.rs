//! Technician connections: one request per stream, each checked, brokered and recorded.

use std::sync::Arc;

use deskside_proto::close;
use deskside_proto::evidence::{self, EvidenceKind};
use deskside_proto::findings;
use deskside_proto::msg::agent::{
    AgentReply, AgentRequest, NoticeAck, Refusal, RefusalCode, Requester, SignedItem,
};
use deskside_proto::msg::diag::Snapshot;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{
    AgentSummary, DiagReport, ErrorCode, ErrorReply, TechReply, TechRequest, TicketSummary,
};
use deskside_transport::framed;
use quinn::{Connection, RecvStream, SendStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{CallError, DIAG_TIMEOUT, Shared};
use crate::clock::now_ms;
use crate::store::{Db, NewEvent, StoreError};

/// The technician behind a connection.
#[derive(Debug, Clone)]
pub(super) struct Tech {
    pub name: String,
    pub tier: Tier,
    /// The technician's connection (its certificate proves the key for renewal).
    pub conn: Connection,
}

impl Tech {
    /// Who asks `agent` for something on `ticket`, with a fresh request key bound to
    /// the three (see [`crate::request_key`]).
    pub fn requester(&self, shared: &Shared, agent: &str, ticket: u64) -> Requester {
        Requester {
            technician: self.name.clone(),
            tier: self.tier,
            ticket,
            request_key: shared.request_keys.issue(
                agent,
                ticket,
                &self.name,
                crate::clock::now_secs(),
            ),
        }
    }
}

pub(super) async fn serve(
    shared: &Arc<Shared>,
    conn: &Connection,
    name: &str,
    tier: Tier,
    cancel: &CancellationToken,
) {
    let tech = Tech {
        name: name.to_owned(),
        tier,
        conn: conn.clone(),
    };
    shared
        .agents
        .add_tech(name, conn, &shared.metrics.technicians_connected);
    serve_streams(shared, conn, &tech, cancel).await;
    shared
        .agents
        .remove_tech(conn, &shared.metrics.technicians_connected);
}

async fn serve_streams(
    shared: &Arc<Shared>,
    conn: &Connection,
    tech: &Tech,
    cancel: &CancellationToken,
) {
    loop {
        let (send, recv) = tokio::select! {
            _ = cancel.cancelled() => {
                conn.close(close::SHUTDOWN.into(), b"controller shutting down");
                return;
            }
            stream = conn.accept_bi() => match stream {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (shared, tech) = (shared.clone(), tech.clone());
        let span = info_span!(
            "request",
            technician = %tech.name,
            kind = tracing::field::Empty,
            ticket = tracing::field::Empty,
            agent = tracing::field::Empty
        );
        tokio::spawn(async move { handle(&shared, &tech, send, recv).await }.instrument(span));
    }
}

async fn handle(shared: &Shared, tech: &Tech, mut send: SendStream, mut recv: RecvStream) {
    let started = std::time::Instant::now();
    let (kind, outcome) =
        match framed::recv_within::<TechRequest>(&mut recv, shared.request_timeout).await {
            Ok(req) => {
                let kind = kind_of(&req);
                if let Err(reply) = gate(shared, tech, ticket_of(&req)).await {
                    return answer_early(shared, send, kind, &reply, started).await;
                }
                let span = tracing::Span::current();
                span.record("kind", kind);
                if let Some(ticket) = ticket_of(&req) {
                    span.record("ticket", ticket);
                }
                if let Some(agent) = agent_of(&req) {
                    span.record("agent", agent);
                }
                debug!(?req, "request");
                let outcome = match req {
                    TechRequest::Escalate { number, to, note } => {
                        super::tickets::bundle(shared, tech, number, Some((to, note)), &mut send)
                            .await
                    }
                    TechRequest::Export { number } => {
                        super::tickets::bundle(shared, tech, number, None, &mut send).await
                    }
                    TechRequest::RunScript {
                        agent,
                        ticket,
                        script,
                        params,
                    } => {
                        super::scripts::run(
                            shared, tech, &agent, ticket, &script, params, &mut send,
                        )
                        .await
                    }
                    TechRequest::Collect {
                        agent,
                        ticket,
                        path,
                    } => {
                        super::collect::collect(shared, tech, &agent, ticket, path, &mut send).await
                    }
                    req => {
                        let reply = dispatch(shared, tech, req).await;
                        if let Err(e) = framed::send(&mut send, &reply).await {
                            debug!(error = %e, "technician went away before the reply");
                        }
                        outcome_of(&reply)
                    }
                };
                (kind, outcome)
            }
            Err(e) => {
                let reply = error(ErrorCode::BadRequest, format!("unreadable request: {e}"));
                let _ = framed::send(&mut send, &reply).await;
                ("unreadable", outcome_of(&reply))
            }
        };
    let elapsed = started.elapsed();
    shared.metrics.observe(kind, &outcome, elapsed);
    info!(kind, %outcome, elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX), "request done");
    let _ = send.finish();
}

/// Every request passes here first, in one store call: revocation is checked on every
/// request, not only at connect; and a per-ticket request for a ticket `tech` may not
/// see gets the reply a missing ticket gets, so the reply does not reveal it exists.
async fn gate(shared: &Shared, tech: &Tech, ticket: Option<u64>) -> Result<(), TechReply> {
    let (name, tier) = (tech.name.clone(), tech.tier);
    let checked = shared
        .store
        .run(move |db| {
            if db.technician(&name)?.is_none_or(|t| t.revoked) {
                return Ok(None);
            }
            Ok(Some(match ticket {
                Some(number) => db.visible_ticket(number, &name, tier).map(|_| ()),
                None => Ok(()),
            }))
        })
        .await;
    match checked {
        Ok(Some(visible)) => visible.map_err(store_error),
        Ok(None) => Err(error(
            ErrorCode::Forbidden,
            format!("technician {} has been revoked", tech.name),
        )),
        // Refused all the same, but not called a revocation: the store could not say.
        Err(e) => Err(store_error(e)),
    }
}

/// Replies to a request refused before it is dispatched, and counts it.
async fn answer_early(
    shared: &Shared,
    mut send: SendStream,
    kind: &'static str,
    reply: &TechReply,
    started: std::time::Instant,
) {
    let _ = framed::send(&mut send, reply).await;
    let _ = send.finish();
    let outcome = outcome_of(reply);
    debug!(kind, %outcome, "refused before dispatch");
    shared.metrics.observe(kind, &outcome, started.elapsed());
}

/// The metric label for a request.
fn kind_of(req: &TechRequest) -> &'static str {
    match req {
        TechRequest::ListAgents => "list_agents",
        TechRequest::NewTicket { .. } => "new_ticket",
        TechRequest::ListTickets => "list_tickets",
        TechRequest::ShowTicket { .. } => "show_ticket",
        TechRequest::Diagnostics { .. } => "diagnostics",
        TechRequest::RequestSession { .. } => "request_session",
        TechRequest::JoinSession { .. } => "join_session",
        TechRequest::EndSession { .. } => "end_session",
        TechRequest::Note { .. } => "note",
        TechRequest::Resolve { .. } => "resolve",
        TechRequest::Escalate { .. } => "escalate",
        TechRequest::Export { .. } => "export",
        TechRequest::Sync { .. } => "sync",
        TechRequest::ListScripts => "list_scripts",
        TechRequest::ShowScript { .. } => "show_script",
        TechRequest::RunScript { .. } => "run_script",
        TechRequest::RenewCertificate { .. } => "renew_certificate",
        TechRequest::Collect { .. } => "collect",
    }
}

fn ticket_of(req: &TechRequest) -> Option<u64> {
    match req {
        TechRequest::ShowTicket { number }
        | TechRequest::Note { number, .. }
        | TechRequest::Resolve { number, .. }
        | TechRequest::Escalate { number, .. }
        | TechRequest::Export { number }
        | TechRequest::Sync { number } => Some(*number),
        TechRequest::Diagnostics { ticket, .. }
        | TechRequest::RequestSession { ticket, .. }
        | TechRequest::JoinSession { ticket, .. }
        | TechRequest::EndSession { ticket, .. }
        | TechRequest::RunScript { ticket, .. }
        | TechRequest::Collect { ticket, .. } => Some(*ticket),
        _ => None,
    }
}

fn agent_of(req: &TechRequest) -> Option<&str> {
    match req {
        TechRequest::Diagnostics { agent, .. }
        | TechRequest::RequestSession { agent, .. }
        | TechRequest::EndSession { agent, .. }
        | TechRequest::RunScript { agent, .. }
        | TechRequest::Collect { agent, .. } => Some(agent),
        TechRequest::NewTicket { agent, .. } => agent.as_deref(),
        _ => None,
    }
}

/// `ok`, or the error code as it appears in JSON (`agent_refused`, …).
pub(super) fn outcome_of(reply: &TechReply) -> String {
    match reply {
        TechReply::Error(e) => serde_json::to_value(e.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "error".into()),
        _ => "ok".into(),
    }
}

pub(super) fn error(code: ErrorCode, message: impl Into<String>) -> TechReply {
    TechReply::Error(ErrorReply {
        code,
        message: message.into(),
    })
}

pub(super) fn store_error(e: StoreError) -> TechReply {
    match e {
        StoreError::NotFound(m) => error(ErrorCode::NotFound, m),
        StoreError::Conflict(m) => error(ErrorCode::BadRequest, m),
        other => {
            warn!(error = %other, "store failure");
            error(ErrorCode::Internal, other.to_string())
        }
    }
}

async fn dispatch(shared: &Shared, tech: &Tech, req: TechRequest) -> TechReply {
    let result = match req {
        TechRequest::ListAgents => list_agents(shared).await,
        TechRequest::NewTicket {
            title,
            agent,
            requester,
            priority,
        } => {
            return super::tickets::new(shared, tech, title, agent, requester, priority).await;
        }
        TechRequest::ListTickets => return super::tickets::list(shared, tech).await,
        TechRequest::ShowTicket { number } => return super::tickets::show(shared, number).await,
        TechRequest::Note { number, text } => {
            return super::tickets::note(shared, tech, number, text).await;
        }
        TechRequest::Resolve { number, note } => {
            return super::tickets::resolve(shared, tech, number, note).await;
        }
        TechRequest::Sync { number } => return super::tickets::sync(shared, tech, number).await,
        TechRequest::Escalate { .. } | TechRequest::Export { .. } => {
            Ok(error(ErrorCode::BadRequest, "bundles are streamed"))
        }
        TechRequest::Diagnostics { agent, ticket } => {
            return diagnostics(shared, tech, agent, ticket).await;
        }
        TechRequest::RequestSession {
            agent,
            ticket,
            scopes,
            duration_secs,
            wait_secs,
        } => {
            return super::sessions::request(
                shared,
                tech,
                &agent,
                ticket,
                scopes,
                duration_secs,
                wait_secs,
            )
            .await;
        }
        TechRequest::JoinSession { code, ticket } => {
            return super::sessions::join(shared, tech, &code, ticket).await;
        }
        TechRequest::EndSession { agent, ticket } => {
            return super::sessions::end(shared, tech, &agent, ticket).await;
        }
        TechRequest::ListScripts => shared
            .store
            .run(|db| db.scripts())
            .await
            .map(TechReply::Scripts),
        TechRequest::ShowScript { name } => return super::scripts::show(shared, name).await,
        TechRequest::RunScript { .. } => {
            Ok(error(ErrorCode::BadRequest, "script runs are streamed"))
        }
        TechRequest::Collect { .. } => Ok(error(ErrorCode::BadRequest, "files are streamed")),
        TechRequest::RenewCertificate { csr_pem } => {
            return super::renew::technician(shared, &tech.conn, &tech.name, &csr_pem).await;
        }
    };
    result.unwrap_or_else(store_error)
}

async fn list_agents(shared: &Shared) -> Result<TechReply, StoreError> {
    let mut agents = shared.store.run(|db| db.agents()).await?;
    for a in &mut agents {
        a.online = shared.agents.is_online(&a.id);
    }
    Ok(TechReply::Agents(agents))
}

/// Asks the agent for a snapshot, stores it as evidence on the ticket, and returns it
/// with findings. Every outcome lands on the ticket's timeline.
async fn diagnostics(shared: &Shared, tech: &Tech, agent_key: String, ticket: u64) -> TechReply {
    let found = shared
        .store
        .run(move |db| Ok((db.find_agent(&agent_key)?, db.ticket(ticket)?)))
        .await;
    let (agent, _) = match found {
        Ok(v) => v,
        Err(e) => return store_error(e),
    };
    if agent.revoked {
        return error(
            ErrorCode::Forbidden,
            format!("agent {} is revoked", agent.id),
        );
    }
    let span = info_span!("diagnostics", agent = %agent.id, ticket);
    async {
        let req = AgentRequest::Diagnostics {
            requester: tech.requester(shared, &agent.id, ticket),
        };
        let sent_ms = now_ms();
        let outcome = shared.agents.call_open(&agent.id, &req, DIAG_TIMEOUT).await;
        let rtt_ms = shared
            .agents
            .connection(&agent.id)
            .map_or(0, |c| u64::try_from(c.rtt().as_millis()).unwrap_or(0));
        let (kind, detail, reply) = match outcome {
            Ok((AgentReply::Snapshot(item), mut send)) => {
                let (reply, ack) =
                    store_snapshot(shared, tech, &agent.id, ticket, *item, sent_ms + rtt_ms / 2)
                        .await;
                super::intake::acknowledge(&mut send, &ack).await;
                return reply;
            }
            Ok((AgentReply::Refused(refusal), _)) => (
                "refused",
                format!(
                    "diagnostics requested by {} refused by the agent: {}",
                    tech.name, refusal.reason
                ),
                refused(&agent.id, &refusal),
            ),
            Ok((AgentReply::Failed { reason }, _)) => (
                "failed",
                format!(
                    "diagnostics requested by {} failed on the agent: {reason}",
                    tech.name
                ),
                error(
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
                error(ErrorCode::AgentFailed, "the agent sent an unexpected reply"),
            ),
            Err(e) => {
                let code = match e {
                    CallError::Offline(_) => ErrorCode::AgentOffline,
                    CallError::Timeout { .. } => ErrorCode::Timeout,
                    CallError::Transport { .. } => ErrorCode::AgentFailed,
                };
                (
                    "failed",
                    format!("diagnostics requested by {}: {e}", tech.name),
                    error(code, e.to_string()),
                )
            }
        };
        info!(outcome = kind, %detail, "diagnostics not stored");
        record(shared, ticket, &tech.name, kind, detail).await;
        reply
    }
    .instrument(span)
    .await
}

async fn store_snapshot(
    shared: &Shared,
    tech: &Tech,
    agent: &str,
    ticket: u64,
    item: SignedItem,
    agent_started_ms: u64,
) -> (TechReply, NoticeAck) {
    let unusable = |reason: String| {
        let ack = NoticeAck::Rejected {
            reason: reason.clone(),
        };
        (error(ErrorCode::AgentFailed, reason), ack)
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
    // The agent stamped the snapshot with its own clock when it started collecting;
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
            Err(refused) => return (refused.reply(), refused.ack()),
        };
    info!(sha256 = %evidence.sha256, findings = snapshot.findings.len(), "snapshot stored");
    let reply = TechReply::Diagnostics(Box::new(DiagReport {
        ticket,
        agent: agent.to_owned(),
        snapshot,
        evidence,
    }));
    (reply, NoticeAck::Recorded)
}

/// The technician-facing error for an agent's refusal; the code drives the CLI exit status.
pub(super) fn refused(agent: &str, r: &Refusal) -> TechReply {
    let code = match r.code {
        RefusalCode::NoSession => ErrorCode::NoSession,
        RefusalCode::SessionExpired => ErrorCode::SessionExpired,
        RefusalCode::Disabled => ErrorCode::AgentDisabled,
        RefusalCode::Policy
        | RefusalCode::User
        | RefusalCode::BadSignature
        | RefusalCode::BadParams
        | RefusalCode::BadCode => ErrorCode::AgentRefused,
    };
    error(code, format!("agent {agent} refused: {}", r.reason))
}

/// The agent (by id or unique hostname) and the ticket a request is about.
pub(super) async fn target(
    shared: &Shared,
    agent: &str,
    ticket: u64,
) -> Result<(AgentSummary, TicketSummary), TechReply> {
    target_and(shared, agent, ticket, |_| Ok(()))
        .await
        .map(|(agent, ticket, ())| (agent, ticket))
}

/// [`target`], then `more` in the same store call (one trip to the database thread).
pub(super) async fn target_and<T, F>(
    shared: &Shared,
    agent: &str,
    ticket: u64,
    more: F,
) -> Result<(AgentSummary, TicketSummary, T), TechReply>
where
    T: Send + 'static,
    F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
{
    let key = agent.to_owned();
    let (agent, ticket, more) = shared
        .store
        .run(move |db| Ok((db.find_agent(&key)?, db.ticket(ticket)?, more(db))))
        .await
        .map_err(store_error)?;
    if agent.revoked {
        return Err(error(
            ErrorCode::Forbidden,
            format!("agent {} is revoked", agent.id),
        ));
    }
    Ok((agent, ticket, more.map_err(store_error)?))
}

/// Appends a timeline entry, logging (not failing) if the store refuses.
pub(super) async fn record(
    shared: &Shared,
    ticket: u64,
    actor: &str,
    kind: &'static str,
    detail: String,
) {
    let actor = actor.to_owned();
    let result = shared
        .store
        .run(move |db| {
            db.add_event(
                ticket,
                &NewEvent {
                    actor: &actor,
                    kind,
                    detail: &detail,
                    evidence_sha256: None,
                },
            )
        })
        .await;
    if let Err(e) = result {
        warn!(ticket, error = %e, "timeline entry not recorded");
    }
}

/// The technician-facing error when an agent could not be asked at all.
pub(super) fn call_failed(e: CallError) -> TechReply {
    let code = match e {
        CallError::Offline(_) => ErrorCode::AgentOffline,
        CallError::Timeout { .. } => ErrorCode::Timeout,
        CallError::Transport { .. } => ErrorCode::AgentFailed,
    };
    error(code, e.to_string())
}
