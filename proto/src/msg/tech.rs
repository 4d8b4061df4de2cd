//! Technician → controller requests and their replies. The JSON form of the replies is
//! what `deskside … --json` prints.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::limits::{MAX_REPLY_BYTES, MAX_REQUEST_BYTES};
use crate::msg::diag::Snapshot;
use crate::msg::identity::Tier;

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
    Error(ErrorReply),
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
}
