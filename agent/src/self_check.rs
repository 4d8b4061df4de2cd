//! "Check my computer": the user's own look at their machine from the desktop helper.
//! The same snapshot and findings a technician's diagnostics take, kept on the machine:
//! nothing is sent or stored. One check at a time, and a result younger than
//! [`REUSE_FOR`] is answered again instead of taking another, so a local user cannot
//! keep the agent busy by asking in a loop.

use std::time::{Duration, Instant};

use deskside_proto::findings;
use deskside_proto::msg::diag::Finding;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// A snapshot takes about a second of CPU on a desktop; a user who clicks again within
/// this gets the same answer (the machine has not changed meanwhile in a way worth
/// another second).
pub const REUSE_FOR: Duration = Duration::from_secs(30);

/// What the user sees after a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalCheck {
    /// Unix seconds when the snapshot was taken.
    pub taken_at_secs: u64,
    pub findings: Vec<Finding>,
}

/// The last check, shared by every control connection of one agent.
#[derive(Debug, Default)]
pub struct SelfCheck {
    last: Mutex<Option<(Instant, LocalCheck)>>,
}

impl SelfCheck {
    /// Takes a snapshot and its findings, or returns one taken within [`REUSE_FOR`].
    /// Callers queue behind a check under way and get its result.
    pub async fn run(&self) -> LocalCheck {
        let mut last = self.last.lock().await;
        if let Some((at, check)) = last.as_ref()
            && at.elapsed() < REUSE_FOR
        {
            return check.clone();
        }
        let snapshot = crate::diag::snapshot().await;
        let check = LocalCheck {
            taken_at_secs: crate::now_secs(),
            findings: findings::evaluate(&snapshot),
        };
        *last = Some((Instant::now(), check.clone()));
        check
    }
}
