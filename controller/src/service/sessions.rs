//! Technician session requests, joins by code and ends: brokered to the agent, whose
//! answer (or the user's) is final, and recorded on the ticket timeline.

use std::time::{Duration, Instant};

use deskside_proto::msg::agent::{AgentReply, AgentRequest, RefusalCode};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::Grant;
use deskside_proto::msg::session::{
    MAX_ANSWER_SECS, MAX_SESSION_SECS, Scope, SessionAsk, SessionOutcome,
};
use deskside_proto::msg::tech::{ErrorCode, SessionReport};
use tracing::{debug, info, warn};

use super::common::{Failure, Principal, Shared, admit, record, target};
use super::throttle::{Held, Wrong};

/// The agent answers a session request after the user does; allow some slack on top.
const ANSWER_SLACK: Duration = Duration::from_secs(15);

/// A session to ask the agent's user for.
#[derive(Debug, Clone)]
pub(crate) struct SessionRequest {
    /// The agent's id or a hostname that names exactly one agent.
    pub agent: String,
    pub ticket: u64,
    pub scopes: Vec<Scope>,
    pub duration_secs: u64,
    /// How long the user has to answer.
    pub wait_secs: u64,
}

fn too_high(tech: &Principal, scopes: &[Scope]) -> Option<Scope> {
    scopes.iter().copied().find(|s| match s {
        Scope::ScriptsL2 => tech.tier < Tier::L2,
        Scope::ScriptsL3 => tech.tier < Tier::L3,
        _ => false,
    })
}

fn describe(outcome: &SessionOutcome) -> (&'static str, String) {
    match outcome {
        SessionOutcome::Approved(g) => (
            "session",
            format!(
                "session {} approved ({:?}): {} until {}",
                g.id,
                g.origin,
                Scope::list(&g.scopes),
                crate::clock::format_secs(g.expires_at_secs)
            ),
        ),
        SessionOutcome::Refused { reason } => ("session", format!("session refused: {reason}")),
        SessionOutcome::NoAnswer { waited_secs } => (
            "session",
            format!("session request not answered within {waited_secs}s"),
        ),
    }
}

fn session_reply(
    shared_agent: &str,
    ticket: u64,
    reply: AgentReply,
) -> (Option<String>, Result<SessionReport, Failure>) {
    match reply {
        AgentReply::Session(outcome) => {
            let (_, detail) = describe(&outcome);
            (
                Some(detail),
                Ok(SessionReport {
                    agent: shared_agent.to_owned(),
                    ticket,
                    outcome,
                }),
            )
        }
        AgentReply::Refused(r) => (
            Some(format!("session refused by the agent: {}", r.reason)),
            Err(Failure::refused_by(shared_agent, &r)),
        ),
        AgentReply::Failed { reason } => (
            Some(format!("session request failed: {reason}")),
            Err(Failure::new(ErrorCode::AgentFailed, reason)),
        ),
        other => (
            None,
            Err(Failure::new(
                ErrorCode::AgentFailed,
                format!("unexpected reply {other:?}"),
            )),
        ),
    }
}

/// Asks the agent's user for a session; their answer (or its absence) is final.
pub(crate) async fn request(
    shared: &Shared,
    tech: &Principal,
    ask: SessionRequest,
) -> Result<SessionReport, Failure> {
    let SessionRequest {
        agent,
        ticket,
        scopes,
        duration_secs,
        wait_secs,
    } = ask;
    admit(shared, tech, Some(ticket)).await?;
    let (agent, t) = target(shared, &agent, ticket).await?;
    if scopes.is_empty() {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "ask for at least one scope",
        ));
    }
    if let Some(s) = too_high(tech, &scopes) {
        return Err(Failure::new(
            ErrorCode::Forbidden,
            format!(
                "technician {} is {}; {s} needs a higher tier (escalate the ticket)",
                tech.name, tech.tier
            ),
        ));
    }
    if duration_secs == 0
        || duration_secs > MAX_SESSION_SECS
        || wait_secs == 0
        || wait_secs > MAX_ANSWER_SECS
    {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            format!(
                "a session lasts 1s..{}h and the user gets 1s..{}m to answer",
                MAX_SESSION_SECS / 3600,
                MAX_ANSWER_SECS / 60
            ),
        ));
    }
    record(
        shared,
        ticket,
        &tech.name,
        "session",
        format!(
            "session requested on {} for {} ({} min)",
            agent.id,
            Scope::list(&scopes),
            duration_secs / 60
        ),
    )
    .await;
    let ask = SessionAsk {
        technician: tech.name.clone(),
        tier: tech.tier,
        ticket,
        ticket_title: t.title,
        scopes,
        duration_secs,
        answer_within_secs: wait_secs,
        request_key: shared.request_keys.issue(
            &agent.id,
            ticket,
            &tech.name,
            crate::clock::now_secs(),
        ),
    };
    let reply = shared
        .agents
        .call(
            &agent.id,
            &AgentRequest::RequestSession(ask),
            Duration::from_secs(wait_secs) + ANSWER_SLACK,
        )
        .await?;
    let (detail, out) = session_reply(&agent.id, ticket, reply);
    if let Some(detail) = detail {
        record_outcome(shared, tech, ticket, &agent.id, detail, &out).await;
    }
    out
}

/// Joins the session a user offered by reading out a code. Wrong codes are throttled per
/// technician and controller-wide (see [`super::throttle`]), counted in the metrics and
/// recorded on the ticket's timeline with who entered them.
pub(crate) async fn join(
    shared: &Shared,
    tech: &Principal,
    code: &str,
    ticket: u64,
) -> Result<SessionReport, Failure> {
    admit(shared, tech, Some(ticket)).await?;
    let attempt = shared
        .join_throttle
        .attempt_async(&tech.name, Instant::now(), || async {
            // A store error is no wrong code: it is reported, not counted.
            shared.agents.code_owner(code).await.transpose()
        })
        .await;
    let agent = match attempt {
        Ok(Ok(Ok(agent))) => agent,
        Ok(Ok(Err(e))) => {
            return Err(Failure::new(
                ErrorCode::Internal,
                format!("the controller could not look the support code up: {e}; try again"),
            ));
        }
        Ok(Err(wrong)) => {
            let failure = Failure::new(
                ErrorCode::NotFound,
                format!(
                    "no connected machine offers that support code (wrong, expired, or already used); ask the user to read it again ({wrong})"
                ),
            );
            wrong_code(
                shared,
                tech,
                ticket,
                wrong,
                "no connected machine offers it",
            )
            .await;
            return Err(failure);
        }
        Err(held) => {
            shared.metrics.support_code_refused(held.label());
            debug!(technician = %tech.name, %held, "join by code held");
            return Err(Failure::new(ErrorCode::Throttled, held.to_string()));
        }
    };
    let (agent, _) = target(shared, &agent, ticket).await?;
    let req = AgentRequest::JoinSession {
        requester: tech.requester(shared, &agent.id, ticket),
        code: code.to_owned(),
    };
    let reply = shared
        .agents
        .call(&agent.id, &req, super::AGENT_TIMEOUT)
        .await?;
    if let AgentReply::Refused(r) = &reply
        && r.code == RefusalCode::BadCode
    {
        let wrong = shared.join_throttle.wrong(&tech.name, Instant::now());
        wrong_code(shared, tech, ticket, wrong, "the machine refused it").await;
    }
    let (detail, out) = session_reply(&agent.id, ticket, reply);
    if let Some(detail) = detail {
        let detail = format!("joined {} by the user's code: {detail}", agent.id);
        record_outcome(shared, tech, ticket, &agent.id, detail, &out).await;
    }
    out
}

/// A wrong support code: counted, logged, and on the ticket's timeline (the audit trail
/// of who tried what), with the lock-out it brought on if any. The code itself is not
/// recorded: a near miss would help the next guesser.
async fn wrong_code(shared: &Shared, tech: &Principal, ticket: u64, wrong: Wrong, why: &str) {
    shared.metrics.support_code_refused("wrong_code");
    let locked = matches!(wrong.then, Some(Held::LockedOut { .. }));
    if locked {
        shared.metrics.support_code_lockouts.inc();
        warn!(technician = %tech.name, ticket, "technician locked out of joining by code after too many wrong codes");
    } else {
        info!(technician = %tech.name, ticket, count = wrong.count, "wrong support code");
    }
    let detail = format!("session join by support code refused: {why}; {wrong}");
    record(shared, ticket, &tech.name, "session", detail).await;
}

/// Ends the session the technician holds on the agent for this ticket (the agent stops
/// whatever runs under it). Returns the agent's id and the grant that ended, if any.
pub(crate) async fn end(
    shared: &Shared,
    tech: &Principal,
    agent: &str,
    ticket: u64,
) -> Result<(String, Option<Grant>), Failure> {
    admit(shared, tech, Some(ticket)).await?;
    let (agent, _) = target(shared, agent, ticket).await?;
    let req = AgentRequest::EndSession {
        requester: tech.requester(shared, &agent.id, ticket),
    };
    match shared
        .agents
        .call(&agent.id, &req, super::AGENT_TIMEOUT)
        .await?
    {
        AgentReply::Ended { grant } => {
            let detail = match &grant {
                Some(g) => format!("session {} on {} ended by the technician", g.id, agent.id),
                None => format!("asked {} to end a session; none was active", agent.id),
            };
            record(shared, ticket, &tech.name, "session_ended", detail).await;
            Ok((agent.id, grant))
        }
        AgentReply::Refused(r) => Err(Failure::refused_by(&agent.id, &r)),
        other => Err(Failure::new(
            ErrorCode::AgentFailed,
            format!("unexpected reply {other:?}"),
        )),
    }
}

/// A session decision is evidence too: the outcome (the grant with its scopes and expiry,
/// or the refusal) is stored as a `session` item, signed with the controller's
/// record-signing key ([`crate::records`]), and the timeline entry points at it.
/// Errors and refusals the agent did not decide stay plain timeline entries.
async fn record_outcome(
    shared: &Shared,
    tech: &Principal,
    ticket: u64,
    agent: &str,
    detail: String,
    out: &Result<SessionReport, Failure>,
) {
    let Ok(report) = out else {
        record(shared, ticket, &tech.name, "session", detail).await;
        return;
    };
    let body = serde_json::json!({
        "kind": "session",
        "agent": agent,
        "ticket": ticket,
        "technician": tech.name,
        "technician_tier": tech.tier,
        "outcome": report.outcome,
        "recorded_at_secs": crate::clock::now_secs(),
    });
    let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
    let size = bytes.len() as u64;
    let signature = match shared.records.sign(&bytes) {
        Ok(s) => s,
        Err(reason) => {
            tracing::warn!(ticket, %reason, "session record not signed; keeping the timeline entry");
            record(shared, ticket, &tech.name, "session", detail).await;
            return;
        }
    };
    let blobs = shared.blobs.clone();
    let stored = tokio::task::spawn_blocking(move || blobs.put(&bytes)).await;
    let Ok(Ok(sha)) = stored else {
        tracing::warn!(
            ticket,
            "session record not stored as evidence; keeping the timeline entry"
        );
        record(shared, ticket, &tech.name, "session", detail).await;
        return;
    };
    let item = crate::store::NewEvidence {
        sha256: sha.clone(),
        kind: deskside_proto::evidence::EvidenceKind::Session,
        size_bytes: size,
        agent_id: Some(agent.to_owned()),
        signature: Some(signature),
        redaction: Vec::new(),
    };
    let actor = tech.name.clone();
    let added = shared
        .store
        .run(move |db| {
            db.add_evidence(
                ticket,
                &item,
                &crate::store::NewEvent {
                    actor: &actor,
                    kind: "session",
                    detail: &detail,
                    evidence_sha256: Some(&sha),
                },
            )
        })
        .await;
    if let Err(e) = added {
        tracing::warn!(ticket, error = %e, "session record not recorded");
    }
}
