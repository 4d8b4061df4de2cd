//! Answering the controller. Every request is checked here — local kill switch, the
//! machine's policy, the grant the user gave — recorded in the audit log, then served
//! or refused with a reason.

use std::sync::Arc;

use deskside_proto::evidence::{self, Evidence, EvidenceKind};
use deskside_proto::msg::agent::{AgentReply, AgentRequest, Refusal, Requester, SignedItem};
use deskside_proto::msg::diag::ControllerLink;
use deskside_proto::msg::session::{Scope, SessionOutcome};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::audit::{self, AuditEntry};
use crate::deliver::Deliveries;
use crate::policy::Policy;
use crate::redact::{RedactError, Redactor};
use crate::session::Sessions;
use crate::state::StateDir;

mod diagnostics;
mod scripts;
mod selfservice;

use diagnostics::diagnostics;
use scripts::run_script;

/// Why an evidence item could not be made; the request fails with this text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The value does not serialise (the decoder's own words, as before).
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    /// `policy.toml` cannot be read; the cause is shown in full.
    #[error("the machine's policy cannot be read: {0}")]
    Policy(crate::policy::PolicyError),
    #[error(transparent)]
    Redact(#[from] RedactError),
    #[error(transparent)]
    Serialise(#[from] evidence::SealError),
    #[error("signing {what}: {source}")]
    Sign {
        what: String,
        source: deskside_transport::TransportError,
    },
}

/// Why the agent's request context could not be set up at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtxError {
    #[error("opening the spool in {}", .dir.display())]
    Spool {
        dir: std::path::PathBuf,
        #[source]
        source: crate::spool::SpoolError,
    },
    #[error("reading the audit log: {0}")]
    AuditLog(std::io::Error),
    /// An item recovered from the spool could not be audited.
    #[error("{0}")]
    Audit(String),
}

/// What every request handler needs.
#[derive(Debug, Clone)]
pub struct AgentCtx {
    pub state: StateDir,
    pub agent_id: String,
    /// The agent's private key (PEM), which signs evidence before it leaves the machine.
    key_pem: Arc<String>,
    pub sessions: Arc<Sessions>,
    pub deliveries: Arc<Deliveries>,
    /// The controller's ed25519 script key, learnt at enrollment.
    pub script_key: [u8; 32],
    /// The user's own "Check my computer" (control socket).
    pub self_check: Arc<crate::self_check::SelfCheck>,
}

impl AgentCtx {
    /// Opens the agent's spool (keeping what an earlier run left undelivered).
    pub fn new(
        state: StateDir,
        agent_id: String,
        key_pem: String,
        script_key: [u8; 32],
    ) -> Result<AgentCtx, CtxError> {
        let deliveries = Arc::new(
            Deliveries::open(&state.spool_dir(), state.audit_log()).map_err(|source| {
                CtxError::Spool {
                    dir: state.spool_dir(),
                    source,
                }
            })?,
        );
        let ctx = AgentCtx {
            sessions: Arc::new(Sessions::new(state.clone(), deliveries.clone())),
            state,
            agent_id,
            key_pem: Arc::new(key_pem),
            deliveries,
            script_key,
            self_check: Arc::default(),
        };
        ctx.audit_recovered()?;
        Ok(ctx)
    }

    /// An agent that died after spooling an item but before auditing it left the item
    /// unaudited: write the entry now, before the item leaves the machine.
    fn audit_recovered(&self) -> Result<(), CtxError> {
        let waiting = self.deliveries.waiting_evidence();
        if waiting.is_empty() {
            return Ok(());
        }
        let log = match std::fs::read(self.state.audit_log()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(CtxError::AuditLog(e)),
        };
        for (key, who, kind) in waiting {
            if !log.contains(&key) {
                self.audit(
                    &who,
                    "delivery",
                    "recovered",
                    format!("{kind} spooled before the agent stopped, key {key}; delivering it"),
                )
                .map_err(CtxError::Audit)?;
            }
        }
        Ok(())
    }

    /// Redacts (per the machine's policy), serialises and signs an evidence item.
    pub(crate) fn seal<T: Evidence>(&self, value: &T) -> Result<SignedItem, SealError> {
        let mut value = serde_json::to_value(value)?;
        let policy = Policy::load(&self.state.policy()).map_err(SealError::Policy)?;
        let redactor = Redactor::new(&policy.redact)?;
        redactor.apply(&mut value);
        let bytes = evidence::seal_value(T::KIND, &value)?;
        let mut item = self.sign_item(T::KIND, bytes)?;
        item.redaction = redactor.rules();
        Ok(item)
    }

    /// Serialises and signs `value` as an evidence item, unredacted, under a new key.
    pub(crate) fn seal_unredacted<T: Evidence>(&self, value: &T) -> Result<SignedItem, SealError> {
        let (kind, bytes) = evidence::seal_bytes(value)?;
        self.sign_item(kind, bytes)
    }

    /// Signs `bytes` as an evidence item of `kind`, unredacted, under a new key.
    fn sign_item(&self, kind: EvidenceKind, bytes: Vec<u8>) -> Result<SignedItem, SealError> {
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let signature = self.sign_digest(&digest, kind.as_str())?;
        Ok(SignedItem {
            key: crate::spool::new_key(),
            kind,
            bytes,
            signature,
            redaction: Vec::new(),
        })
    }

    /// The agent's evidence signature over a SHA-256 digest of `what`.
    pub(crate) fn sign_digest(&self, digest: &[u8; 32], what: &str) -> Result<Vec<u8>, SealError> {
        deskside_transport::pki::sign_evidence(&self.key_pem, digest).map_err(|source| {
            SealError::Sign {
                what: what.to_owned(),
                source,
            }
        })
    }

    pub(crate) fn audit(
        &self,
        who: &Requester,
        scope: &str,
        outcome: &str,
        detail: String,
    ) -> Result<(), String> {
        self.write_audit(who, scope, outcome, detail, audit::append)
    }

    /// Writes an audit entry with `append`: [`audit::append`], or
    /// [`audit::append_unsynced`] for an item the spool holds durably (delivery syncs
    /// the log before the item leaves the spool).
    fn write_audit(
        &self,
        who: &Requester,
        scope: &str,
        outcome: &str,
        detail: String,
        append: fn(&std::path::Path, &AuditEntry) -> Result<(), audit::AuditError>,
    ) -> Result<(), String> {
        let entry = AuditEntry {
            at_secs: crate::now_secs(),
            technician: who.technician.clone(),
            tier: who.tier.to_string(),
            ticket: who.ticket,
            scope: scope.to_owned(),
            outcome: outcome.to_owned(),
            detail,
        };
        info!(technician = %entry.technician, ticket = entry.ticket, scope, outcome, detail = %entry.detail, "request");
        append(&self.state.audit_log(), &entry).map_err(|e| {
            warn!(error = %e, "audit log write failed");
            format!("the agent cannot write its audit log, so it serves nothing: {e}")
        })
    }
}

/// Handles one request; sends one reply (or, for scripts, a stream of them) on `replies`.
pub async fn handle(
    ctx: &AgentCtx,
    req: AgentRequest,
    link: ControllerLink,
    replies: mpsc::Sender<AgentReply>,
) {
    let reply = match req {
        AgentRequest::Diagnostics { requester } => diagnostics(ctx, &requester, link).await,
        AgentRequest::RequestSession(ask) => {
            let who = Requester {
                technician: ask.technician.clone(),
                tier: ask.tier,
                ticket: ask.ticket,
                request_key: ask.request_key.clone(),
            };
            let scopes = Scope::list(&ask.scopes);
            let outcome = ctx.sessions.request(ask).await;
            let (word, detail) = describe(&outcome);
            match ctx.audit(&who, &scopes, word, detail) {
                Ok(()) => AgentReply::Session(outcome),
                Err(reason) => AgentReply::Failed { reason },
            }
        }
        AgentRequest::JoinSession { requester, code } => {
            let result = ctx.sessions.join(&requester, &code);
            let (word, detail) = match &result {
                Ok(o) => describe(o),
                Err(r) => ("refused", r.reason.clone()),
            };
            if let Err(reason) = ctx.audit(
                &requester,
                "session",
                word,
                format!("join by code: {detail}"),
            ) {
                AgentReply::Failed { reason }
            } else {
                match result {
                    Ok(outcome) => AgentReply::Session(outcome),
                    Err(r) => AgentReply::Refused(r),
                }
            }
        }
        AgentRequest::EndSession { requester } => {
            let grant = ctx.sessions.end_for(&requester);
            let detail = grant.as_ref().map_or("no session to end".into(), |g| {
                format!("session {} ended by the technician", g.id)
            });
            match ctx.audit(&requester, "session", "ended", detail) {
                Ok(()) => AgentReply::Ended { grant },
                Err(reason) => AgentReply::Failed { reason },
            }
        }
        AgentRequest::RunScript {
            requester,
            script,
            params,
        } => {
            return run_script(ctx, &requester, *script, &params, replies).await;
        }
        // Served on the stream itself by `crate::collect` (raw bytes, not framed replies).
        AgentRequest::CollectFile { .. } => AgentReply::Failed {
            reason: "file requests are answered on their own stream".into(),
        },
        AgentRequest::SelfServiceList { names } => selfservice::retain(ctx, &names),
        AgentRequest::SelfServiceScript { script } => selfservice::offered(ctx, *script),
    };
    let _ = replies.send(reply).await;
}

fn describe(outcome: &SessionOutcome) -> (&'static str, String) {
    match outcome {
        SessionOutcome::Approved(g) => (
            "approved",
            format!(
                "session {} for {} until {} ({:?})",
                g.id,
                Scope::list(&g.scopes),
                g.expires_at_secs,
                g.origin
            ),
        ),
        SessionOutcome::Refused { reason } => ("refused", reason.clone()),
        SessionOutcome::NoAnswer { waited_secs } => (
            "no_answer",
            format!("nobody answered within {waited_secs}s"),
        ),
    }
}

/// The spool has `item` before anything is sent (a lost link or a crash cannot lose
/// it), and the audit log has it before it leaves the machine. That entry is not waited
/// for on disk: the spool keeps the item until the log is synced, and an item spooled
/// but not audited when the agent or the machine died is audited at the next start (see
/// [`AgentCtx::audit_recovered`]), so a crash never leaves an item sent and unaudited.
async fn keep_and_audit(
    ctx: &AgentCtx,
    who: &Requester,
    scope: &str,
    item: &SignedItem,
    outcome: &str,
    detail: String,
) -> Result<(), String> {
    let claim = match ctx.deliveries.keep(who, item).await {
        Ok(claim) => claim,
        Err(reason) => {
            let reason = format!("{} not sent: {reason}", item.kind);
            let _ = ctx.audit(who, scope, "failed", reason.clone());
            return Err(reason);
        }
    };
    if let Err(reason) = ctx.write_audit(who, scope, outcome, detail, audit::append_unsynced) {
        claim.discard().await;
        return Err(reason);
    }
    claim.pass_on();
    Ok(())
}

pub(crate) fn failed(ctx: &AgentCtx, who: &Requester, scope: &str, reason: String) -> AgentReply {
    let _ = ctx.audit(who, scope, "failed", reason.clone());
    AgentReply::Failed { reason }
}

pub(crate) fn refused(
    ctx: &AgentCtx,
    who: &Requester,
    scope: &str,
    refusal: Refusal,
) -> AgentReply {
    match ctx.audit(who, scope, "refused", refusal.reason.clone()) {
        Ok(()) => AgentReply::Refused(refusal),
        Err(reason) => AgentReply::Failed { reason },
    }
}
