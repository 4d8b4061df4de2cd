//! Technician → controller requests and their replies. The JSON form of the replies is
//! what `deskside … --json` prints.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::limits::{MAX_REPLY_BYTES, MAX_REQUEST_BYTES};
use crate::msg::diag::Snapshot;
use crate::msg::files::FileManifest;
use crate::msg::identity::Tier;
use crate::msg::script::{CatalogEntry, OutputStream, RunResult};
use crate::msg::session::{Grant, Scope, SessionOutcome};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TechRequest {
    ListAgents,
    NewTicket {
        title: String,
        agent: Option<String>,
        /// Who reported the problem (free text: a name or an e-mail address).
        requester: String,
        /// `low`, `normal`, `high` or `urgent`.
        priority: String,
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
    /// A note on the timeline.
    Note {
        number: u64,
        text: String,
    },
    Resolve {
        number: u64,
        note: String,
    },
    /// Move the ticket up a tier and build its evidence bundle; replies stream the
    /// bundle's files ([`TechReply::BundleFile`]) then [`TechReply::Bundle`].
    Escalate {
        number: u64,
        to: Tier,
        note: String,
    },
    /// Build the evidence bundle without escalating; replies as for `Escalate`.
    Export {
        number: u64,
    },
    /// Queue a sync to the external ticket system now.
    Sync {
        number: u64,
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
    /// The technician's certificate nears expiry: certify the same key again.
    RenewCertificate {
        csr_pem: String,
    },
    /// Collect the regular file at the absolute `path` on the agent's machine as evidence.
    /// Replies: any number of [`TechReply::CollectProgress`], then
    /// [`TechReply::Collected`] (or an error).
    Collect {
        agent: String,
        ticket: u64,
        path: String,
    },
}

impl TechRequest {
    /// The request's name in metrics, logs and the audit (`list_agents`, `run_script`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            TechRequest::ListAgents => "list_agents",
            TechRequest::NewTicket { .. } => "new_ticket",
            TechRequest::ListTickets => "list_tickets",
            TechRequest::ShowTicket { .. } => "show_ticket",
            TechRequest::Diagnostics { .. } => "diagnostics",
            TechRequest::RequestSession { .. } => "request_session",
            TechRequest::JoinSession { .. } => "join_session",
            TechRequest::EndSession { .. } => "end_session",
            TechRequest::Note { .. } => "note",
            TechRequest::Resolve { .. } => "resolve",
            TechRequest::Escalate { .. } => "escalate",
            TechRequest::Export { .. } => "export",
            TechRequest::Sync { .. } => "sync",
            TechRequest::ListScripts => "list_scripts",
            TechRequest::ShowScript { .. } => "show_script",
            TechRequest::RunScript { .. } => "run_script",
            TechRequest::RenewCertificate { .. } => "renew_certificate",
            TechRequest::Collect { .. } => "collect",
        }
    }

    /// The ticket the request is about, for requests about one.
    pub fn ticket(&self) -> Option<u64> {
        match self {
            TechRequest::ShowTicket { number }
            | TechRequest::Note { number, .. }
            | TechRequest::Resolve { number, .. }
            | TechRequest::Escalate { number, .. }
            | TechRequest::Export { number }
            | TechRequest::Sync { number } => Some(*number),
            TechRequest::Diagnostics { ticket, .. }
            | TechRequest::RequestSession { ticket, .. }
            | TechRequest::JoinSession { ticket, .. }
            | TechRequest::EndSession { ticket, .. }
            | TechRequest::RunScript { ticket, .. }
            | TechRequest::Collect { ticket, .. } => Some(*ticket),
            TechRequest::ListAgents
            | TechRequest::NewTicket { .. }
            | TechRequest::ListTickets
            | TechRequest::ListScripts
            | TechRequest::ShowScript { .. }
            | TechRequest::RenewCertificate { .. } => None,
        }
    }

    /// The agent the request names (an id or a hostname), for requests that name one.
    pub fn agent(&self) -> Option<&str> {
        match self {
            TechRequest::Diagnostics { agent, .. }
            | TechRequest::RequestSession { agent, .. }
            | TechRequest::EndSession { agent, .. }
            | TechRequest::RunScript { agent, .. }
            | TechRequest::Collect { agent, .. } => Some(agent),
            TechRequest::NewTicket { agent, .. } => agent.as_deref(),
            TechRequest::ListAgents
            | TechRequest::ListTickets
            | TechRequest::ShowTicket { .. }
            | TechRequest::JoinSession { .. }
            | TechRequest::Note { .. }
            | TechRequest::Resolve { .. }
            | TechRequest::Escalate { .. }
            | TechRequest::Export { .. }
            | TechRequest::Sync { .. }
            | TechRequest::ListScripts
            | TechRequest::ShowScript { .. }
            | TechRequest::RenewCertificate { .. } => None,
        }
    }
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
    SessionEnded {
        agent: String,
        /// Boxed to keep every reply small; the same on the wire as unboxed.
        grant: Option<Box<Grant>>,
    },
    Scripts(Vec<CatalogEntry>),
    Script(Box<ScriptView>),
    RunOutput {
        stream: OutputStream,
        data: Vec<u8>,
    },
    RunFinished(Box<RunReport>),
    /// The new certificate for the same key (answers `RenewCertificate`).
    Renewed {
        cert_pem: String,
        not_after_secs: u64,
    },
    /// One chunk of a bundle file; `path` is relative (`evidence.json`, `items/<sha256>`…).
    BundleFile {
        path: String,
        offset: u64,
        data: Vec<u8>,
    },
    Bundle(Box<BundleSummary>),
    /// How much of a collected file the controller has stored so far.
    CollectProgress {
        received_bytes: u64,
        total_bytes: u64,
    },
    Collected(Box<CollectReport>),
    Error(ErrorReply),
}

/// A file collected from an agent and stored on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectReport {
    pub ticket: u64,
    pub agent: String,
    /// What the agent signed about the file.
    pub manifest: FileManifest,
    /// The file's bytes as stored (kind `file`).
    pub evidence: EvidenceRef,
    /// The signed manifest as stored (kind `file_manifest`).
    pub manifest_evidence: EvidenceRef,
    /// From the request reaching the controller to the file being durable.
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSummary {
    pub ticket: u64,
    /// Where the controller keeps the bundle.
    pub location: String,
    pub files: u32,
    pub bytes: u64,
    pub escalated_to: Option<Tier>,
    /// What happened with the external ticket system (queued, not configured…).
    pub sync: Option<String>,
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
    /// `new`, `open`, `escalated` or `resolved`.
    pub status: String,
    pub tier: Tier,
    /// `low`, `normal`, `high` or `urgent`.
    pub priority: String,
    /// The person who reported the problem.
    pub requester: String,
    /// The technician working it now.
    pub owner: Option<String>,
    pub agent: Option<String>,
    pub created_by: String,
    pub created_at_secs: u64,
    pub first_response_at_secs: Option<u64>,
    pub resolved_at_secs: Option<u64>,
    pub evidence_count: u32,
    pub sla: Sla,
    /// The ticket in the external ticket system, e.g. `rt:42`.
    pub external_ref: Option<String>,
    /// Last synchronisation result with the external system.
    pub sync_state: Option<String>,
}

/// Service-level targets of a ticket, from its priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Sla {
    /// Unix seconds by which a technician must first act.
    pub response_due_secs: u64,
    /// Unix seconds by which the ticket must be resolved.
    pub resolution_due_secs: u64,
    pub response_breached: bool,
    pub resolution_breached: bool,
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
    /// The agent's signature over the SHA-256 digest (hex DER), for items the agent made.
    pub signature: Option<String>,
    /// Redaction rules the agent applied before the item left the machine.
    pub redaction: Vec<String>,
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
    /// The agent will not send the file named: not absolute, missing, not a regular
    /// file, a symbolic link (in any component), unreadable or over the size limit (the
    /// message says which). A file a rule of the machine keeps there is `AgentRefused`.
    FileUnavailable,
    /// Too many wrong support codes: joining by code waits, for this technician or for
    /// everyone; the message says how long.
    Throttled,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_of_each() -> Vec<TechRequest> {
        let (agent, ticket, number) = (String::from("a1"), 7, 7);
        vec![
            TechRequest::ListAgents,
            TechRequest::NewTicket {
                title: "t".into(),
                agent: Some(agent.clone()),
                requester: "r".into(),
                priority: "normal".into(),
            },
            TechRequest::ListTickets,
            TechRequest::ShowTicket { number },
            TechRequest::Diagnostics {
                agent: agent.clone(),
                ticket,
            },
            TechRequest::RequestSession {
                agent: agent.clone(),
                ticket,
                scopes: vec![Scope::Diagnostics],
                duration_secs: 60,
                wait_secs: 60,
            },
            TechRequest::JoinSession {
                code: "123".into(),
                ticket,
            },
            TechRequest::EndSession {
                agent: agent.clone(),
                ticket,
            },
            TechRequest::Note {
                number,
                text: "n".into(),
            },
            TechRequest::Resolve {
                number,
                note: "n".into(),
            },
            TechRequest::Escalate {
                number,
                to: Tier::L2,
                note: "n".into(),
            },
            TechRequest::Export { number },
            TechRequest::Sync { number },
            TechRequest::ListScripts,
            TechRequest::ShowScript { name: "s".into() },
            TechRequest::RunScript {
                agent: agent.clone(),
                ticket,
                script: "s".into(),
                params: Vec::new(),
            },
            TechRequest::RenewCertificate {
                csr_pem: String::new(),
            },
            TechRequest::Collect {
                agent,
                ticket,
                path: "/p".into(),
            },
        ]
    }

    #[test]
    fn every_request_has_its_own_kind_and_names_what_it_is_about() {
        let requests = one_of_each();
        let mut kinds: Vec<&str> = requests.iter().map(TechRequest::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), requests.len(), "two requests share a kind");
        for req in &requests {
            let kind = req.kind();
            // A request that acts on an agent is always about a ticket (its evidence and
            // timeline go there), except opening the ticket itself.
            if req.agent().is_some() && kind != "new_ticket" {
                assert_eq!(req.ticket(), Some(7), "{kind}");
            }
            let about_ticket = matches!(
                kind,
                "show_ticket" | "note" | "resolve" | "escalate" | "export" | "sync"
            );
            if about_ticket {
                assert_eq!(req.ticket(), Some(7), "{kind}");
                assert_eq!(req.agent(), None, "{kind}");
            }
        }
        let new_ticket = requests.get(1).map(TechRequest::agent);
        assert_eq!(new_ticket, Some(Some("a1")));
    }
}
