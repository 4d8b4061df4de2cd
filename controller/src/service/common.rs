//! What every operation shares: the state, who asks, how an operation fails, where
//! streamed replies go, and the checks and records each operation starts and ends with.

use std::sync::Arc;
use std::time::Duration;

use deskside_proto::msg::agent::{Refusal, RefusalCode, Requester};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{AgentSummary, ErrorCode, ErrorReply, TechReply, TicketSummary};
use rustls_pki_types::CertificateDer;
use tracing::warn;

use super::link::{AgentLink, CallError};
use super::seen::Seen;
use super::throttle::JoinThrottle;
use crate::evidence::BlobStore;
use crate::store::{Db, NewEvent, Store, StoreError};

/// How long an agent may take to answer a request that needs no work on the machine
/// (joining or ending a session).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an agent may take to take and send a snapshot.
pub const DIAG_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the operations share: the store, the evidence blobs, the keys, the way to
/// the agents, and the limits from the configuration.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Store,
    /// Check-ins and last-seen times, committed in batches.
    pub seen: Seen,
    pub blobs: Arc<dyn BlobStore>,
    pub ca: crate::ca::Ca,
    pub script_public_key: [u8; 32],
    /// Issues the key every request to an agent carries, and checks it on late evidence.
    pub request_keys: crate::request_key::RequestKeys,
    /// Signs the session records the controller stores as evidence.
    pub records: crate::records::RecordSigner,
    /// The way to the agents: one request, one reply (or a stream of them).
    pub agents: Arc<dyn AgentLink>,
    pub sla: crate::sla::SlaConfig,
    /// Where escalation and export bundles are built.
    pub bundles: std::path::PathBuf,
    /// The external ticket system, when `[ticketing]` configures one.
    pub ticketing: Option<Arc<dyn crate::adapters::TicketSystem>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long a request (or notice) frame may take to arrive whole.
    pub request_timeout: Duration,
    /// Validity of the client certificates issued at enrollment and renewal.
    pub client_validity: Duration,
    /// Largest file `deskside collect` stores.
    pub max_collect_bytes: u64,
    /// Wrong support codes per technician and controller-wide.
    pub join_throttle: JoinThrottle,
    /// What the live views show: agents coming and going, tickets changing.
    pub events: super::events::Events,
}

/// Who asks: a technician, authenticated by the front end (a client certificate today).
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub tier: Tier,
    /// The certificate the technician presented, when the front end has one; renewal
    /// needs it to prove the key.
    pub certificate: Option<CertificateDer<'static>>,
}

impl Principal {
    /// Who asks `agent` for something on `ticket`, with a fresh request key bound to
    /// the three (see [`crate::request_key`]).
    pub(super) fn requester(&self, shared: &Shared, agent: &str, ticket: u64) -> Requester {
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

/// Why an operation did not succeed: the code decides the technician's exit status, the
/// message says what happened and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// The technician-facing failure for an agent's refusal.
    pub(super) fn refused_by(agent: &str, r: &Refusal) -> Failure {
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
        Failure::new(code, format!("agent {agent} refused: {}", r.reason))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        match e {
            StoreError::NotFound(m) => Failure::new(ErrorCode::NotFound, m),
            StoreError::Conflict(m) => Failure::new(ErrorCode::BadRequest, m),
            other => {
                warn!(error = %other, "store failure");
                Failure::new(ErrorCode::Internal, other.to_string())
            }
        }
    }
}

impl From<CallError> for Failure {
    /// The technician-facing failure when an agent could not be asked at all.
    fn from(e: CallError) -> Failure {
        let code = match e {
            CallError::Offline(_) => ErrorCode::AgentOffline,
            CallError::Timeout { .. } => ErrorCode::Timeout,
            CallError::Transport { .. } => ErrorCode::AgentFailed,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<Failure> for TechReply {
    fn from(f: Failure) -> TechReply {
        TechReply::Error(ErrorReply {
            code: f.code,
            message: f.message,
        })
    }
}

/// Where an operation's streamed replies go (script output, file progress, bundle
/// files) before its final reply. A sink whose reader went away keeps accepting and
/// drops what it is given: the operation still finishes and stores its evidence.
pub trait ReplySink: Send {
    fn send(&mut self, reply: &TechReply) -> impl Future<Output = ()> + Send;

    /// Whether the reader went away: work done only for them (streaming a bundle they
    /// will not receive) may stop.
    fn gone(&self) -> bool;
}

/// Checks that `who` still may ask anything (revocation is checked on every request, not
/// only at connect) and, for a request about `ticket`, that they may see it: a ticket
/// they may not see gets the failure a missing ticket gets, so it does not reveal that
/// it exists. Every operation starts here.
pub(super) async fn admit(
    shared: &Shared,
    who: &Principal,
    ticket: Option<u64>,
) -> Result<(), Failure> {
    let (name, tier) = (who.name.clone(), who.tier);
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
        .await?;
    match checked {
        Some(visible) => Ok(visible?),
        None => Err(Failure::new(
            ErrorCode::Forbidden,
            format!("technician {} has been revoked", who.name),
        )),
    }
}

/// The agent (by id or unique hostname) and the ticket a request is about.
pub(super) async fn target(
    shared: &Shared,
    agent: &str,
    ticket: u64,
) -> Result<(AgentSummary, TicketSummary), Failure> {
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
) -> Result<(AgentSummary, TicketSummary, T), Failure>
where
    T: Send + 'static,
    F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
{
    let key = agent.to_owned();
    let (agent, ticket, more) = shared
        .store
        .run(move |db| Ok((db.find_agent(&key)?, db.ticket(ticket)?, more(db))))
        .await?;
    if agent.revoked {
        return Err(Failure::new(
            ErrorCode::Forbidden,
            format!("agent {} is revoked", agent.id),
        ));
    }
    Ok((agent, ticket, more?))
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
