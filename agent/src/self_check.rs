//! The snapshot behind "Check my computer" (`crate::selfhelp`): the same snapshot and
//! findings a technician's diagnostics take, kept on the machine — nothing is sent or
//! stored. One check at a time, and a snapshot younger than [`REUSE_FOR`] is used again
//! instead of taking another, so a local user cannot keep the agent busy by asking in a
//! loop.

use std::time::{Duration, Instant};

use deskside_proto::findings;
use deskside_proto::msg::diag::Snapshot;
use tokio::sync::Mutex;

/// A snapshot takes about a second of CPU on a desktop; a user who clicks again within
/// this gets the same answer (the machine has not changed meanwhile in a way worth
/// another second).
pub const REUSE_FOR: Duration = Duration::from_secs(30);

/// The last check's snapshot, shared by every control connection of one agent.
#[derive(Debug, Default)]
pub struct SelfCheck {
    last: Mutex<Option<(Instant, Snapshot)>>,
}

impl SelfCheck {
    /// Takes a snapshot and evaluates its findings, or returns one taken within
    /// [`REUSE_FOR`]. Callers queue behind a check under way and get its result.
    pub async fn snapshot(&self) -> Snapshot {
        let mut last = self.last.lock().await;
        if let Some((at, snapshot)) = last.as_ref()
            && at.elapsed() < REUSE_FOR
        {
            return snapshot.clone();
        }
        let mut snapshot = crate::diag::snapshot().await;
        snapshot.findings = findings::evaluate(&snapshot);
        *last = Some((Instant::now(), snapshot.clone()));
        snapshot
    }
}
