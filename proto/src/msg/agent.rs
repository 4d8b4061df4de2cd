//! Controller ↔ agent: the agent's check-in, requests the controller sends down streams
//! it opens on the agent's connection, and notices the agent sends up its own streams.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::evidence::EvidenceKind;
use crate::limits::{MAX_AGENT_REQUEST_BYTES, MAX_CONTROL_BYTES, MAX_EVIDENCE_BYTES};
#[cfg(doc)]
use crate::msg::diag::Snapshot;
#[cfg(doc)]
use crate::msg::files::FileManifest;
use crate::msg::files::FileRefusal;
use crate::msg::identity::Tier;
use crate::msg::script::{RunEvent, SignedScript};
use crate::msg::session::{Grant, Scope, SessionAsk, SessionOutcome};

/// Sent by an agent after the hello: what the controller lists in `deskside agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIn {
    pub hostname: String,
    /// `PRETTY_NAME` from os-release.
    pub os: String,
    pub kernel: String,
    pub agent_version: String,
}

impl Message for CheckIn {
    const KIND: &'static str = "check-in";
    const MAX_BYTES: u32 = MAX_CONTROL_BYTES;
}

/// Who is asking. The agent checks this against its own policy and grant; the
/// controller's word alone never grants anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub technician: String,
    pub tier: Tier,
    pub ticket: u64,
    /// The request key the controller issued for this request, bound on its side to this
    /// technician, ticket and agent. The agent echoes it with everything the request
    /// produces; evidence delivered later under a key the controller did not issue to
    /// that agent for that ticket is refused for good.
    pub request_key: String,
}

/// A request from the controller to an agent; one per stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentRequest {
    Diagnostics {
        requester: Requester,
    },
    /// Ask the user for a session (or let policy decide).
    RequestSession(SessionAsk),
    /// Join the session the user started, with the code they read out.
    JoinSession {
        requester: Requester,
        code: String,
    },
    /// The technician ends their session.
    EndSession {
        requester: Requester,
    },
    /// Run a signed catalog script; replies are a stream of [`AgentReply::Run`] events.
    RunScript {
        requester: Requester,
        script: Box<SignedScript>,
        params: Vec<(String, String)>,
    },
    /// Send the regular file at the absolute `path`, if it is at most `max_bytes` long:
    /// [`AgentReply::FileStart`], the raw bytes, then [`AgentReply::FileSent`] (see
    /// [`crate::msg::files`]).
    CollectFile {
        requester: Requester,
        path: String,
        max_bytes: u64,
    },
    /// The names of the catalog's self-service scripts as they are now: the agent drops
    /// any script it cached that is not named. Answered with [`AgentReply::SelfService`].
    SelfServiceList {
        names: Vec<String>,
    },
    /// One signed self-service script for the agent to verify and cache ahead of time,
    /// so its user can run it without a technician. Answered with
    /// [`AgentReply::SelfService`], or [`AgentReply::Refused`] when it does not verify.
    SelfServiceScript {
        script: Box<SignedScript>,
    },
}

impl AgentRequest {
    pub fn requester(&self) -> Requester {
        match self {
            AgentRequest::Diagnostics { requester }
            | AgentRequest::JoinSession { requester, .. }
            | AgentRequest::EndSession { requester }
            | AgentRequest::RunScript { requester, .. }
            | AgentRequest::CollectFile { requester, .. } => requester.clone(),
            // The controller's own housekeeping: no technician, no ticket.
            AgentRequest::SelfServiceList { .. } | AgentRequest::SelfServiceScript { .. } => {
                Requester {
                    technician: "controller".into(),
                    tier: Tier::L1,
                    ticket: 0,
                    request_key: String::new(),
                }
            }
            AgentRequest::RequestSession(ask) => Requester {
                technician: ask.technician.clone(),
                tier: ask.tier,
                ticket: ask.ticket,
                request_key: ask.request_key.clone(),
            },
        }
    }

    /// The scope this request uses, for requests that use one.
    pub fn scope(&self) -> Option<Scope> {
        match self {
            AgentRequest::Diagnostics { .. } => Some(Scope::Diagnostics),
            AgentRequest::RunScript { script, .. } => Some(Scope::for_script(script.entry.tier)),
            AgentRequest::CollectFile { .. } => Some(Scope::Files),
            _ => None,
        }
    }
}

impl Message for AgentRequest {
    const KIND: &'static str = "agent request";
    const MAX_BYTES: u32 = MAX_AGENT_REQUEST_BYTES;
}

/// Why the agent said no; the technician's exit code depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The machine's policy denies this scope.
    Policy,
    /// The user declined.
    User,
    /// No session covers this technician, ticket and scope.
    NoSession,
    /// The session that covered it has expired.
    SessionExpired,
    /// The user switched the agent off locally (`deskside-agent disable`).
    Disabled,
    /// The script's signature or body hash does not verify.
    BadSignature,
    /// A parameter failed validation on the agent.
    BadParams,
    /// Wrong, used or expired support code.
    BadCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    pub code: RefusalCode,
    pub reason: String,
}

/// An evidence item as the agent made it: JSON bytes, redacted on the machine, signed
/// with the agent's own key before they leave it. The controller stores `bytes` verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedItem {
    /// Idempotency key the agent chose when it made the item (see [`MAX_KEY_BYTES`]):
    /// however often the item is delivered, the controller stores it once.
    pub key: String,
    /// What the bytes are: a [`Snapshot`] as JSON, a `RunRecord` as JSON… On the wire
    /// the kind's name, as a string.
    pub kind: EvidenceKind,
    pub bytes: Vec<u8>,
    /// ECDSA P-256 (ASN.1 DER) over the SHA-256 of `bytes`, with the agent's key.
    pub signature: Vec<u8>,
    /// Redaction rules applied before signing, e.g. `emails`, `ip_addresses`.
    pub redaction: Vec<String>,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentReply {
    /// A diagnostics snapshot ([`SignedItem`] of kind `snapshot`).
    Snapshot(Box<SignedItem>),
    /// The signed record of a script run, sent after `Run(Finished)`.
    Evidence(Box<SignedItem>),
    Session(SessionOutcome),
    /// A session ended (by the technician's request).
    Ended {
        grant: Option<Grant>,
    },
    Run(RunEvent),
    Refused(Refusal),
    Failed {
        reason: String,
    },
    /// The file will follow as exactly `size_bytes` raw bytes on this stream.
    FileStart {
        size_bytes: u64,
    },
    /// After the raw bytes: the signed [`FileManifest`] (a [`SignedItem`] of kind
    /// `file_manifest`).
    FileSent(Box<SignedItem>),
    /// The agent will not send the file (missing, not regular, too large…).
    FileRefused(FileRefusal),
    /// The self-service scripts the agent holds after the request, by name.
    SelfService {
        cached: Vec<String>,
    },
}

impl Message for AgentReply {
    const KIND: &'static str = "agent reply";
    const MAX_BYTES: u32 = MAX_EVIDENCE_BYTES;
}

/// Longest idempotency key accepted: the agent makes 32 hex digits.
pub const MAX_KEY_BYTES: usize = 64;

/// Whether `key` is a well-formed idempotency key: 1–64 ASCII letters, digits or `-`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Something the agent tells the controller, wrapped in a [`Delivery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentNotice {
    /// The user started a session: technicians may join with this code until expiry.
    SupportCode { code: String, expires_at_secs: u64 },
    /// A session ended on the agent's side: `by` is `user`, `expiry`, `disable`,
    /// `technician` or `replaced`.
    SessionEnded { grant: Grant, by: String },
    /// Evidence the agent made whose direct delivery was not acknowledged (the link
    /// dropped, either side restarted), sent again from the agent's on-disk spool.
    Evidence {
        requester: Requester,
        item: Box<SignedItem>,
    },
    /// The agent's certificate nears expiry: certify the same key again (a CSR signed
    /// by it). Sent directly, never spooled; answered with [`NoticeAck::Renewed`].
    Renew { csr_pem: String },
    /// The machine's user asks for help: open a ticket with their sentence and the
    /// facts. Answered with [`NoticeAck::Opened`], or `Rejected` (over the rate limit).
    AskForHelp(Box<HelpAsk>),
}

/// Most self-fix runs one ask carries: the latest ones, which are what L1 reads first.
pub const MAX_ASK_RUNS: usize = 10;
/// Longest sentence a user may write when asking for help: it becomes the ticket's
/// title (shortened) and its first timeline entry.
pub const MAX_ASK_TEXT_BYTES: usize = 1000;

/// What the agent sends when its user asks for help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpAsk {
    /// The local user who asked, as the machine knows them (`alice`).
    pub user: String,
    /// Their words (at most [`MAX_ASK_TEXT_BYTES`]).
    pub text: String,
    /// A snapshot taken when they asked ([`SignedItem`] of kind `snapshot`).
    pub snapshot: SignedItem,
    /// The self-fix runs since the last ask (of kind `script_run`, at most
    /// [`MAX_ASK_RUNS`]), oldest first.
    pub runs: Vec<SignedItem>,
}

/// One notice on a stream the agent opens. The agent keeps it in its spool until the
/// controller acknowledges it; the controller records each `key` once per agent, so a
/// redelivered notice is acknowledged again but not recorded twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub key: String,
    pub notice: AgentNotice,
}

impl Message for Delivery {
    const KIND: &'static str = "delivery";
    /// Evidence is the largest notice.
    const MAX_BYTES: u32 = MAX_EVIDENCE_BYTES + MAX_CONTROL_BYTES;
}

/// The controller's acknowledgement of a delivery, or of evidence sent as a reply
/// (then on the request's own stream, after the reply). Sent only once the item is
/// durable — or will never be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeAck {
    /// Committed, now or by an earlier delivery of the same key: the agent forgets it.
    Recorded,
    /// Will never be accepted (bad signature, no such ticket): the agent drops it and
    /// says so in its audit log.
    Rejected { reason: String },
    /// Not stored this time (the controller's store failed): deliver it again later.
    Retry { reason: String },
    /// The answer to [`AgentNotice::Renew`]: the new certificate for the same key.
    Renewed {
        cert_pem: String,
        not_after_secs: u64,
    },
    /// The answer to [`AgentNotice::AskForHelp`]: recorded as this ticket.
    Opened { ticket: u64 },
}

impl Message for NoticeAck {
    const KIND: &'static str = "notice ack";
    const MAX_BYTES: u32 = MAX_CONTROL_BYTES;
}
