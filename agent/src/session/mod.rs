//! Support sessions on the agent: pending requests waiting for the user, the active
//! grant, the user-started support code, and the local kill switch. The grant is held
//! and checked here for every request; nothing the controller says widens it.

use std::sync::{Arc, Mutex, MutexGuard};

use deskside_proto::msg::agent::{Refusal, RefusalCode, Requester};
use deskside_proto::msg::session::{Grant, Scope, SessionAsk};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::policy::{Decision, Policy};
use crate::state::StateDir;

mod asked;
mod support;

pub use asked::AnswerError;

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
    notices: Arc<crate::deliver::Deliveries>,
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
    pub fn new(state: StateDir, notices: Arc<crate::deliver::Deliveries>) -> Sessions {
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
