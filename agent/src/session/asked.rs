//! Sessions a technician asks for: policy decides, or the user answers in time, or
//! nobody does; and how any session ends.

use std::sync::Arc;
use std::time::Duration;

use deskside_proto::msg::agent::{AgentNotice, Requester};
use deskside_proto::msg::session::{
    Grant, GrantOrigin, MAX_ANSWER_SECS, MAX_SESSION_SECS, Scope, SessionAsk, SessionOutcome,
};
use tokio::sync::oneshot;

use super::{Active, Pending, PendingView, Sessions};
use crate::policy::Decision;

/// Why the user's answer to a session request was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("no pending request {0} (`deskside-agent pending` lists them)")]
    NoSuchRequest(u32),
    #[error("that request was already answered")]
    AlreadyAnswered,
}

impl Sessions {
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
        self.touch();
        let answer = tokio::time::timeout(Duration::from_secs(wait), rx).await;
        self.lock().pending.retain(|p| p.view.id != id);
        self.touch();
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

    pub(super) fn grant(
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
                ticket_title: ask.ticket_title.clone(),
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
        self.touch();
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
        self.touch();
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
}
