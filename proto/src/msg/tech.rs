//! Technician → controller requests and their replies. The JSON form of the replies is
//! what `deskside … --json` prints.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::limits::{MAX_REPLY_BYTES, MAX_REQUEST_BYTES};
use crate::msg::diag::Snapshot;
use crate::msg::identity::Tier;
use crate::msg::script::{CatalogEntry, OutputStream, RunResult};
use crate::msg::session::{Grant, Scope, SessionOutcome};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TechRequest {
    ListAgents,
    NewTicket {
        title: String,
        agent: Option<String>,
    },
    ListTickets,
    ShowTicket {
        number: u64,
    },
    /// `agent` is an agent id or a hostname that names exactly one agent.
    Diagnostics {
        agent: String,
        ticket: u64,
    },
    RequestSession {
        agent: String,
        ticket: u64,
        scopes: Vec<Scope>,
        duration_secs: u64,
        wait_secs: u64,
    },
    /// Join a user-started session by the code the user reads out.
    JoinSession {
        code: String,
        ticket: u64,
    },
    EndSession {
        agent: String,
        ticket: u64,
    },
    ListScripts,
    ShowScript {
        name: String,
    },
    /// Replies: any number of [`TechReply::RunOutput`], then one [`TechReply::RunFinished`]
    /// (or an error).
    RunScript {
        agent: String,
        ticket: u64,
        script: String,
        params: Vec<(String, String)>,
    },
}

impl Message for TechRequest {
    const KIND: &'static str = "technician request";
    const MAX_BYTES: u32 = MAX_REQUEST_BYTES;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TechReply {
    Agents(Vec<AgentSummary>),
    Tickets(Vec<TicketSummary>),
    Ticket(Box<TicketView>),
    Diagnostics(Box<DiagReport>),
    Session(Box<SessionReport>),
    SessionEnded { agent: String, grant: Option<Grant> },
    Scripts(Vec<CatalogEntry>),
    Script(Box<ScriptView>),
    RunOutput { stream: OutputStream, data: Vec<u8> },
    RunFinished(Box<RunReport>),
    Error(ErrorReply),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReport {
    pub agent: String,
    pub ticket: u64,
    pub outcome: SessionOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptView {
    pub entry: CatalogEntry,
    pub body: String,
    /// Hex SHA-256 of the body, as signed.
    pub body_sha256: String,
    pub added_at_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub ticket: u64,
    pub agent: String,
    pub script: String,
    pub version: u32,
    pub result: RunResult,
    pub evidence: EvidenceRef,
}

impl Message for TechReply {
    const KIND: &'static str = "technician reply";
    const MAX_BYTES: u32 = MAX_REPLY_BYTES;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub agent_version: String,
    pub enrolled_at_secs: u64,
    /// Last check-in or request answered; `None` if it never connected.
    pub last_seen_secs: Option<u64>,
    pub online: bool,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSummary {
    pub number: u64,
    pub title: String,
    pub status: String,
    pub tier: Tier,
    pub agent: Option<String>,
    pub created_by: String,
    pub created_at_secs: u64,
    pub evidence_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    pub ticket: TicketSummary,
    pub timeline: Vec<TimelineEntry>,
    pub evidence: Vec<EvidenceRef>,
}

/// One event on a ticket. `hash` covers this entry and the previous entry's hash, so the
/// timeline is a chain: editing, removing or reordering an entry breaks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub at_secs: u64,
    pub actor: String,
    pub kind: String,
    pub detail: String,
    /// SHA-256 (hex) of the evidence item this entry records, if any.
    pub evidence_sha256: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRef {
    /// SHA-256 (hex) of the stored bytes; also their name in the blob store.
    pub sha256: String,
    /// `snapshot` today; script runs and session records later.
    pub kind: String,
    pub size_bytes: u64,
    pub agent: Option<String>,
    pub created_at_secs: u64,
    /// Where the controller keeps it, for admins on the controller host.
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagReport {
    pub ticket: u64,
    pub agent: String,
    pub snapshot: Snapshot,
    pub evidence: EvidenceRef,
}

/// A refused or failed technician request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    Forbidden,
    AgentOffline,
    AgentRefused,
    AgentFailed,
    Timeout,
    Internal,
    /// No session covers the request (ask for one with `deskside session request`).
    NoSession,
    /// The session that covered it expired.
    SessionExpired,
    /// The agent is disabled locally by its user.
    AgentDisabled,
}
