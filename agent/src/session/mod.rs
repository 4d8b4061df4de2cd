//! Support sessions on the agent: pending requests waiting for the user, the active
//! grant, the user-started support code, and the local kill switch. The grant is held
//! and checked here for every request; nothing the controller says widens it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
    /// The ticket's title as the request named it (empty when unknown: joined by code).
    ticket_title: String,
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

/// What a watcher gets: the state, and the generation to pass back next time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watched {
    pub generation: u64,
    pub status: SessionStatus,
    /// The active session's ticket title, empty when unknown.
    pub active_ticket_title: String,
}

/// Shared session state of one agent.
pub struct Sessions {
    state: StateDir,
    inner: Mutex<Inner>,
    /// Parent of every grant's token: `disable` cancels everything at once.
    all: Mutex<CancellationToken>,
    /// Woken on every change (the desktop helper's watch waits on it).
    changed: Notify,
    /// Counts changes, so a watcher can tell "changed since I looked" without a race.
    generation: AtomicU64,
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
            generation: AtomicU64::new(1),
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
        self.touch();
        Ok(())
    }

    pub fn enable(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.state.disabled_flag()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.touch();
        Ok(())
    }

    pub fn set_activity(&self, what: Option<String>) {
        self.lock().activity = what;
        self.touch();
    }

    /// Records a change and wakes every watcher.
    fn touch(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Waits until the state differs from generation `seen`, or `wait` passes; returns
    /// the generation and the state then. `seen == 0` never matches: it answers at once.
    pub async fn watch(&self, seen: u64, wait: Duration) -> Watched {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        // Registered before the generation is read: a change in between still wakes us.
        changed.as_mut().enable();
        if self.generation.load(Ordering::Acquire) == seen {
            let _ = tokio::time::timeout(wait, changed).await;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let active_ticket_title = self
            .lock()
            .active
            .as_ref()
            .map(|a| a.ticket_title.clone())
            .unwrap_or_default();
        Watched {
            generation,
            status: self.status(),
            active_ticket_title,
        }
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

#[cfg(test)]
mod tests {
    use deskside_proto::msg::identity::Tier;

    use super::*;

    fn sessions(dir: &std::path::Path) -> anyhow::Result<Arc<Sessions>> {
        let state = StateDir::new(dir.join("state"));
        state.create()?;
        std::fs::write(state.policy(), crate::policy::DEFAULT_POLICY)?;
        let notices = Arc::new(crate::deliver::Deliveries::open(
            &state.spool_dir(),
            state.audit_log(),
        )?);
        Ok(Arc::new(Sessions::new(state, notices)))
    }

    fn ask() -> SessionAsk {
        SessionAsk {
            technician: "ann".into(),
            tier: Tier::L1,
            ticket: 7,
            ticket_title: "printer offline".into(),
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
            answer_within_secs: 60,
            request_key: "k".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn watch_answers_at_once_for_zero_waits_for_a_change_and_times_out_without()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let s = sessions(dir.path())?;
        let first = s.watch(0, Duration::from_secs(30)).await;
        assert!(first.status.pending.is_empty());

        // Nothing changes: the watch returns after its wait with the same generation.
        let idle = s.watch(first.generation, Duration::from_secs(30)).await;
        assert_eq!(idle.generation, first.generation);

        // A request arrives while a watcher waits: it wakes with the request in view.
        let watcher = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.watch(first.generation, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        let asking = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.request(ask()).await })
        };
        let woke = watcher.await?;
        assert!(woke.generation > first.generation);
        let pending = woke
            .status
            .pending
            .first()
            .map(|p| (p.id, p.ask.ticket_title.clone()));
        let Some((id, title)) = pending else {
            anyhow::bail!("the watcher woke without the request: {woke:?}");
        };
        assert_eq!(title, "printer offline");

        // Approved: the next watch shows the session with its ticket's title.
        s.answer(id, true)?;
        assert!(matches!(
            asking.await?,
            deskside_proto::msg::session::SessionOutcome::Approved(_)
        ));
        let active = s.watch(woke.generation, Duration::from_secs(30)).await;
        assert_eq!(active.status.active.map(|g| g.ticket), Some(7));
        assert_eq!(active.active_ticket_title, "printer offline");
        Ok(())
    }
}
