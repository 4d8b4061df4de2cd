//! Support sessions: what a technician asks for, what the user (or the machine's policy)
//! grants, and how it ends. The agent holds and enforces the grant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::msg::identity::Tier;

/// What a session may do on the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    Diagnostics,
    ScriptsL1,
    ScriptsL2,
    ScriptsL3,
    Files,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Diagnostics,
        Scope::ScriptsL1,
        Scope::ScriptsL2,
        Scope::ScriptsL3,
        Scope::Files,
    ];

    /// The name policy files and the command line use.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Diagnostics => "diagnostics",
            Scope::ScriptsL1 => "scripts:l1",
            Scope::ScriptsL2 => "scripts:l2",
            Scope::ScriptsL3 => "scripts:l3",
            Scope::Files => "files",
        }
    }

    /// The scope a script of `tier` needs.
    pub fn for_script(tier: Tier) -> Scope {
        match tier {
            Tier::L1 => Scope::ScriptsL1,
            Tier::L2 => Scope::ScriptsL2,
            Tier::L3 => Scope::ScriptsL3,
        }
    }

    /// Parses `diagnostics,scripts:l1` (whitespace allowed, duplicates folded).
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, UnknownScope> {
        let mut out: Vec<Scope> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(UnknownScope(s.to_owned()));
        }
        Ok(out)
    }

    pub fn list(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}: expected diagnostics, scripts:l1, scripts:l2, scripts:l3 or files")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// How a grant came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantOrigin {
    /// The user approved a technician's request.
    UserApproved,
    /// The user started the session and read the code to the technician.
    UserCode,
    /// The machine's policy allows every requested scope unattended.
    Policy,
}

/// A session the agent granted: who, for which ticket, what, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub technician: String,
    pub tier: Tier,
    pub ticket: u64,
    pub scopes: Vec<Scope>,
    pub expires_at_secs: u64,
    pub origin: GrantOrigin,
    /// The request key of the request that made the session (see
    /// [`crate::msg::agent::Requester::request_key`]): the agent's notice that the
    /// session ended carries it back. Empty in session records stored before keys.
    #[serde(default)]
    pub request_key: String,
}

/// What happened to a session request. Each outcome has its own exit code on the
/// technician's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOutcome {
    Approved(Grant),
    /// The user said no, or the machine's policy denies a requested scope.
    Refused {
        reason: String,
    },
    /// Nobody answered within the time the technician allowed.
    NoAnswer {
        waited_secs: u64,
    },
}

/// The request the agent shows its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAsk {
    pub technician: String,
    pub tier: Tier,
    pub ticket: u64,
    pub ticket_title: String,
    pub scopes: Vec<Scope>,
    pub duration_secs: u64,
    /// How long the technician waits for the user's answer.
    pub answer_within_secs: u64,
    /// See [`crate::msg::agent::Requester::request_key`].
    pub request_key: String,
}

/// Longest session a technician may ask for: a working day.
pub const MAX_SESSION_SECS: u64 = 8 * 3600;
/// Longest a technician may wait for an answer.
pub const MAX_ANSWER_SECS: u64 = 10 * 60;
/// A user-started session's code stays valid this long.
pub const SUPPORT_CODE_SECS: u64 = 10 * 60;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_sort_and_dedupe() {
        assert_eq!(
            Scope::parse_list("scripts:l1, diagnostics,scripts:l1"),
            Ok(vec![Scope::Diagnostics, Scope::ScriptsL1])
        );
        assert!(Scope::parse_list("diagnostics,root").is_err());
        assert!(Scope::parse_list(" , ").is_err());
        assert_eq!(
            Scope::list(&[Scope::Diagnostics, Scope::Files]),
            "diagnostics,files"
        );
        assert_eq!(Scope::for_script(Tier::L2), Scope::ScriptsL2);
    }
}
