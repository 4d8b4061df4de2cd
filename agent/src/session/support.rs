//! Sessions the user starts: a short support code read out to the help desk, which
//! a technician joins with.

use std::sync::Arc;

use deskside_proto::msg::agent::{AgentNotice, Refusal, RefusalCode, Requester};
use deskside_proto::msg::session::{
    GrantOrigin, MAX_SESSION_SECS, SUPPORT_CODE_SECS, Scope, SessionAsk, SessionOutcome,
};

use super::{Sessions, SupportCode, refuse};
use crate::policy::Decision;

impl Sessions {
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
        self.touch();
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
}

/// Codes are read over the phone: ignore spaces and dashes.
fn normalise(code: &str) -> String {
    code.chars().filter(char::is_ascii_digit).collect()
}
