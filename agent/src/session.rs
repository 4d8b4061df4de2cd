//! Support sessions on the agent: pending requests waiting for the user, the active
//! grant, the user-started support code, and the local kill switch. The grant is held
//! and checked here for every request; nothing the controller says widens it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use deskside_proto::msg::agent::{AgentNotice, Refusal, RefusalCode, Requester};
use deskside_proto::msg::session::{
    Grant, GrantOrigin, MAX_ANSWER_SECS, MAX_SESSION_SECS, SUPPORT_CODE_SECS, Scope, SessionAsk,
    SessionOutcome,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::policy::{Decision, Policy};
use crate::state::StateDir;

/// Why the user's answer to a session request was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("no pending request {0} (`deskside-agent pending` lists them)")]
    NoSuchRequest(u32),
    #[error("that request was already answered")]
    AlreadyAnswered,
}

/// A request waiting for the user, as the support UI and `pending` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    pub id: u32,
    pub ask: SessionAsk,
    /// Unix seconds when the technician stops waiting.
    pub answer_by_secs: u64,
}

/// A user-started session's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportCode {
    pub code: String,
    pub expires_at_secs: u64,
    pub scopes: Vec<Scope>,
    pub duration_secs: u64,
    pub used: bool,
}

struct Pending {
    view: PendingView,
    answer: Option<oneshot::Sender<bool>>,
}

struct Active {
    grant: Grant,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Inner {
    next_id: u32,
    pending: Vec<Pending>,
    active: Option<Active>,
    /// The last grant that ended by expiry, to tell "expired" from "never had one".
    expired: Option<Grant>,
    code: Option<SupportCode>,
    activity: Option<String>,
}

/// Everything the support UI shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub disabled: bool,
    pub pending: Vec<PendingView>,
    pub active: Option<Grant>,
    pub activity: Option<String>,
    pub code: Option<SupportCode>,
}

/// Shared session state of one agent.
pub struct Sessions {
    state: StateDir,
    inner: Mutex<Inner>,
    /// Parent of every grant's token: `disable` cancels everything at once.
    all: Mutex<CancellationToken>,
    /// Woken on every change (the support UI waits on it).
    pub changed: Notify,
    notices: Arc<crate::outbox::Outbox>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

fn refuse(code: RefusalCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

impl Sessions {
    pub fn new(state: StateDir, notices: Arc<crate::outbox::Outbox>) -> Sessions {
        Sessions {
            state,
            inner: Mutex::new(Inner::default()),
            all: Mutex::new(CancellationToken::new()),
            changed: Notify::new(),
            notices,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section below leaves `Inner` consistent, so a panic elsewhere
        // does not make it unusable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn all(&self) -> CancellationToken {
        self.all.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn policy(&self) -> Result<Policy, Refusal> {
        Policy::load(&self.state.policy()).map_err(|e| {
            refuse(RefusalCode::Policy, format!("the machine's policy cannot be read ({e:#}); nothing is allowed until it is fixed"))
        })
    }

    /// The local kill switch is a file, so it survives restarts and works without the service.
    pub fn disabled(&self) -> bool {
        self.state.disabled_flag().exists()
    }

    fn check_enabled(&self) -> Result<(), Refusal> {
        if self.disabled() {
            return Err(refuse(
                RefusalCode::Disabled,
                "the user has switched Deskside off on this machine (deskside-agent disable); nothing is allowed until they run deskside-agent enable",
            ));
        }
        Ok(())
    }

    /// May `who` use `scope` now? Returns the token that ends the work when the session
    /// does, and the grant it happens under (`None` when policy allows it unattended).
    pub fn authorize(
        &self,
        who: &Requester,
        scope: Scope,
    ) -> Result<(CancellationToken, Option<String>), Refusal> {
        self.check_enabled()?;
        let path = self.state.policy();
        match self.policy()?.decision(scope.as_str()) {
            Decision::Deny => Err(refuse(
                RefusalCode::Policy,
                format!("the machine's policy ({}) denies {scope}", path.display()),
            )),
            Decision::Allow => Ok((self.all().child_token(), None)),
            Decision::Prompt => {
                let now = crate::now_secs();
                let inner = self.lock();
                let matches = |g: &Grant| g.technician == who.technician && g.ticket == who.ticket;
                let Some(active) = inner.active.as_ref().filter(|a| matches(&a.grant)) else {
                    if inner.expired.as_ref().is_some_and(matches) {
                        return Err(refuse(
                            RefusalCode::SessionExpired,
                            "the session for this ticket has expired; ask the user for a new one",
                        ));
                    }
                    return Err(refuse(
                        RefusalCode::NoSession,
                        format!(
                            "{scope} needs a session the user approved (policy {}: {scope} = \"prompt\"), and {} has none for ticket #{} on this machine; ask with `deskside session request`",
                            path.display(),
                            who.technician,
                            who.ticket
                        ),
                    ));
                };
                if now >= active.grant.expires_at_secs {
                    drop(inner);
                    self.end("expiry");
                    return Err(refuse(
                        RefusalCode::SessionExpired,
                        "the session for this ticket has expired; ask the user for a new one",
                    ));
                }
                if !active.grant.scopes.contains(&scope) {
                    return Err(refuse(
                        RefusalCode::NoSession,
                        format!(
                            "the session the user granted covers {} only, not {scope}",
                            Scope::list(&active.grant.scopes)
                        ),
                    ));
                }
                Ok((active.cancel.clone(), Some(active.grant.id.clone())))
            }
        }
    }

    /// A technician asks for a session: policy decides, or the user does, or nobody in time.
    pub async fn request(self: &Arc<Self>, ask: SessionAsk) -> SessionOutcome {
        if let Err(r) = self.check_enabled() {
            return SessionOutcome::Refused { reason: r.reason };
        }
        let policy = match self.policy() {
            Ok(p) => p,
            Err(r) => return SessionOutcome::Refused { reason: r.reason },
        };
        if let Some(denied) = ask
            .scopes
            .iter()
            .find(|s| policy.decision(s.as_str()) == Decision::Deny)
        {
            return SessionOutcome::Refused {
                reason: format!(
                    "the machine's policy ({}) denies {denied}",
                    self.state.policy().display()
                ),
            };
        }
        let duration = ask.duration_secs.clamp(1, MAX_SESSION_SECS);
        if ask
            .scopes
            .iter()
            .all(|s| policy.decision(s.as_str()) == Decision::Allow)
        {
            let grant = self.grant(&ask, ask.scopes.clone(), duration, GrantOrigin::Policy);
            return SessionOutcome::Approved(grant);
        }
        let wait = ask.answer_within_secs.clamp(1, MAX_ANSWER_SECS);
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = self.lock();
            inner.next_id = inner.next_id.wrapping_add(1);
            let id = inner.next_id;
            inner.pending.push(Pending {
                view: PendingView {
                    id,
                    ask: ask.clone(),
                    answer_by_secs: crate::now_secs() + wait,
                },
                answer: Some(tx),
            });
            id
        };
        self.changed.notify_waiters();
        let answer = tokio::time::timeout(Duration::from_secs(wait), rx).await;
        self.lock().pending.retain(|p| p.view.id != id);
        self.changed.notify_waiters();
        match answer {
            Ok(Ok(true)) => SessionOutcome::Approved(self.grant(
                &ask,
                ask.scopes.clone(),
                duration,
                GrantOrigin::UserApproved,
            )),
            Ok(Ok(false)) => SessionOutcome::Refused {
                reason: "the user declined the session".into(),
            },
            // The sender went away without an answer: `disable` clears pending requests.
            Ok(Err(_)) => SessionOutcome::Refused {
                reason: "the request was withdrawn on the machine (the agent was disabled)".into(),
            },
            Err(_) => SessionOutcome::NoAnswer { waited_secs: wait },
        }
    }

    fn grant(
        self: &Arc<Self>,
        ask: &SessionAsk,
        scopes: Vec<Scope>,
        duration: u64,
        origin: GrantOrigin,
    ) -> Grant {
        let bytes: [u8; 6] = rand::random();
        let grant = Grant {
            id: format!("s-{}", hex::encode(bytes)),
            technician: ask.technician.clone(),
            tier: ask.tier,
            ticket: ask.ticket,
            scopes,
            expires_at_secs: crate::now_secs() + duration,
            origin,
            request_key: ask.request_key.clone(),
        };
        let cancel = self.all().child_token();
        let replaced = {
            let mut inner = self.lock();
            inner.expired = None;
            inner.active.replace(Active {
                grant: grant.clone(),
                cancel: cancel.clone(),
            })
        };
        if let Some(old) = replaced {
            old.cancel.cancel();
            self.notices.push(AgentNotice::SessionEnded {
                grant: old.grant,
                by: "replaced".into(),
            });
        }
        // End the session at its expiry, cancelling whatever still runs under it.
        let this = Arc::clone(self);
        let id = grant.id.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(duration)) => {
                    if this.lock().active.as_ref().is_some_and(|a| a.grant.id == id) {
                        this.end("expiry");
                    }
                }
                _ = cancel.cancelled() => {}
            }
        });
        self.changed.notify_waiters();
        grant
    }

    /// Answers a pending request from the user side; returns who had asked.
    pub fn answer(&self, id: u32, approve: bool) -> Result<Requester, AnswerError> {
        let mut inner = self.lock();
        let pending = inner
            .pending
            .iter_mut()
            .find(|p| p.view.id == id)
            .ok_or(AnswerError::NoSuchRequest(id))?;
        let sender = pending.answer.take().ok_or(AnswerError::AlreadyAnswered)?;
        let _ = sender.send(approve);
        let ask = &pending.view.ask;
        Ok(Requester {
            technician: ask.technician.clone(),
            tier: ask.tier,
            ticket: ask.ticket,
            request_key: ask.request_key.clone(),
        })
    }

    /// Ends the active session (`by`: user, technician, expiry, disable). Cancels
    /// everything still running under it.
    pub fn end(&self, by: &str) -> Option<Grant> {
        let ended = {
            let mut inner = self.lock();
            let ended = inner.active.take();
            if let Some(a) = &ended {
                if by == "expiry" {
                    inner.expired = Some(a.grant.clone());
                }
                inner.activity = None;
            }
            ended
        };
        let ended = ended.map(|a| {
            a.cancel.cancel();
            a.grant
        });
        if let Some(g) = &ended {
            self.notices.push(AgentNotice::SessionEnded {
                grant: g.clone(),
                by: by.to_owned(),
            });
        }
        self.changed.notify_waiters();
        ended
    }

    /// The technician ends their own session.
    pub fn end_for(&self, who: &Requester) -> Option<Grant> {
        let theirs =
            self.lock().active.as_ref().is_some_and(|a| {
                a.grant.technician == who.technician && a.grant.ticket == who.ticket
            });
        if theirs { self.end("technician") } else { None }
    }

    /// The user starts a session: a short code to read to the hotline engineer.
    pub fn start_support(
        &self,
        scopes: Vec<Scope>,
        duration_secs: u64,
    ) -> Result<SupportCode, Refusal> {
        self.check_enabled()?;
        let n: u32 = rand::random::<u32>() % 1_000_000;
        let code = SupportCode {
            code: format!("{:03}-{:03}", n / 1000, n % 1000),
            expires_at_secs: crate::now_secs() + SUPPORT_CODE_SECS,
            scopes,
            duration_secs: duration_secs.clamp(60, MAX_SESSION_SECS),
            used: false,
        };
        self.lock().code = Some(code.clone());
        self.notices.push(AgentNotice::SupportCode {
            code: code.code.clone(),
            expires_at_secs: code.expires_at_secs,
        });
        self.changed.notify_waiters();
        Ok(code)
    }

    /// A technician joins with the code the user read out.
    pub fn join(self: &Arc<Self>, who: &Requester, code: &str) -> Result<SessionOutcome, Refusal> {
        self.check_enabled()?;
        let policy = self.policy()?;
        let support = {
            let mut inner = self.lock();
            let bad = || {
                refuse(
                    RefusalCode::BadCode,
                    "wrong or expired support code; ask the user to read it again or start a new one",
                )
            };
            let current = inner.code.as_mut().ok_or_else(bad)?;
            if normalise(&current.code) != normalise(code)
                || crate::now_secs() >= current.expires_at_secs
            {
                return Err(bad());
            }
            if current.used {
                return Err(refuse(
                    RefusalCode::BadCode,
                    "this support code was already used; codes are single-use",
                ));
            }
            current.used = true;
            current.clone()
        };
        let scopes: Vec<Scope> = support
            .scopes
            .iter()
            .copied()
            .filter(|s| policy.decision(s.as_str()) != Decision::Deny)
            .collect();
        if scopes.is_empty() {
            return Ok(SessionOutcome::Refused {
                reason: "the machine's policy denies every scope the user offered".into(),
            });
        }
        let ask = SessionAsk {
            technician: who.technician.clone(),
            tier: who.tier,
            ticket: who.ticket,
            ticket_title: String::new(),
            scopes: scopes.clone(),
            duration_secs: support.duration_secs,
            answer_within_secs: 0,
            request_key: who.request_key.clone(),
        };
        Ok(SessionOutcome::Approved(self.grant(
            &ask,
            scopes,
            support.duration_secs,
            GrantOrigin::UserCode,
        )))
    }

    /// The kill switch: refuse everything, end the session, drop pending requests.
    pub fn disable(&self) -> std::io::Result<()> {
        std::fs::write(self.state.disabled_flag(), b"disabled by the user\n")?;
        let old = std::mem::replace(
            &mut *self.all.lock().unwrap_or_else(|p| p.into_inner()),
            CancellationToken::new(),
        );
        old.cancel();
        self.lock().pending.clear();
        self.end("disable");
        self.changed.notify_waiters();
        Ok(())
    }

    pub fn enable(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.state.disabled_flag()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.changed.notify_waiters();
        Ok(())
    }

    pub fn set_activity(&self, what: Option<String>) {
        self.lock().activity = what;
        self.changed.notify_waiters();
    }

    pub fn status(&self) -> SessionStatus {
        let disabled = self.disabled();
        let inner = self.lock();
        SessionStatus {
            disabled,
            pending: inner.pending.iter().map(|p| p.view.clone()).collect(),
            active: inner.active.as_ref().map(|a| a.grant.clone()),
            activity: inner.activity.clone(),
            code: inner
                .code
                .clone()
                .filter(|c| !c.used && c.expires_at_secs > crate::now_secs()),
        }
    }
}

/// Codes are read over the phone: ignore spaces and dashes.
fn normalise(code: &str) -> String {
    code.chars().filter(char::is_ascii_digit).collect()
}
