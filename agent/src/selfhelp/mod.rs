//! L0 self-service on the machine, without a technician: the catalog's self-service
//! scripts cached ahead of time (`cache.rs`), the user running one (`fix.rs`, its signed
//! record kept by `kept.rs`), checking the machine (`check.rs`, with plain advice per
//! finding in `advice.rs`), and asking for help (`ask.rs`). The control socket serves
//! them (`crate::control`'s `selfserve.rs`); `client.rs` is the calls a front end (the terminal commands,
//! the desktop helper) makes, and `render.rs` their text for a terminal.

use deskside_proto::msg::agent::Requester;
use deskside_proto::msg::diag::Severity;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::script::{ParamSpec, RunResult};
use serde::{Deserialize, Serialize};

use crate::local_user::Caller;

pub mod advice;
pub(crate) mod ask;
pub mod cache;
pub(crate) mod check;
pub mod client;
pub(crate) mod fix;
mod kept;
pub mod render;

pub use check::report;

pub use cache::SCOPE;

/// A self-service script as the user chooses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfFix {
    pub name: String,
    pub version: u32,
    pub description: String,
    /// What it changes, in the catalog's words.
    pub changes: String,
    pub params: Vec<ParamSpec>,
}

/// How a self-fix run went, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixOutcome {
    pub script: String,
    pub version: u32,
    pub result: RunResult,
    /// Output shown (at most [`render::MAX_SHOWN_OUTPUT`] bytes per stream; the signed
    /// record keeps all the runner kept).
    pub stdout: String,
    pub stderr: String,
    /// The signed run record's key: it goes with the next request for help.
    pub evidence_key: String,
}

/// One finding with what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedFinding {
    pub severity: Severity,
    pub code: String,
    /// The finding in the rule's words ("/ is 97% full").
    pub message: String,
    /// What the user can do, in plain words ([`advice::advice`]).
    pub advice: String,
    /// A self-service script on this machine that fixes it, if there is one.
    pub fix: Option<String>,
}

/// "Check my computer": the machine's findings with advice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub hostname: String,
    pub collected_at_ms: u64,
    pub findings: Vec<CheckedFinding>,
}

/// The answer to "ask for help".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked {
    /// The ticket the controller opened; `None` when the request waits in the spool.
    pub ticket: Option<u64>,
    pub message: String,
}

/// The name the audit log and the ticket give the caller.
pub fn user_name(caller: &Caller) -> String {
    match caller {
        Caller::Root => "root".to_owned(),
        Caller::AgentUser { uid, name } => name.clone().unwrap_or_else(|| format!("uid{uid}")),
        Caller::LocalSession { name, .. } => name.clone(),
    }
}

/// Who acts, for the audit log: the local user, marked as self-service.
fn actor(user: &str, tier: Tier, ticket: u64) -> Requester {
    Requester {
        technician: format!("{user} (self-service)"),
        tier,
        ticket,
        request_key: String::new(),
    }
}
