//! The bundle's format: the file names, `evidence.json`'s types and the format version.
//! Both the writer (`bundle/`) and the reports (`report/`) read it.

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TicketSummary, TimelineEntry};
use serde::{Deserialize, Serialize};

pub const EVIDENCE_JSON: &str = "evidence.json";
pub const ITEMS_DIR: &str = "items";
pub const REPORT_MD: &str = "report.md";
pub const REPORT_HTML: &str = "report.html";
/// Bumped when the bundle layout changes meaning. 2: every item is signed, session
/// records by the controller (`controller_cert_pem`, `items[].signer`).
pub const BUNDLE_FORMAT: u32 = 2;

/// `evidence.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: u32,
    pub generated_at_secs: u64,
    /// Software that made it, e.g. `deskside 0.1.0`.
    pub generator: String,
    pub ticket: TicketSummary,
    /// Present when the bundle was made by an escalation.
    pub escalation: Option<Escalation>,
    pub timeline: Vec<TimelineEntry>,
    pub items: Vec<BundleItem>,
    pub agents: Vec<BundleAgent>,
    /// The controller CA that issued every agent certificate in `agents` and
    /// `controller_cert_pem`.
    pub ca_pem: String,
    /// The controller's record-signing certificate: it signs the items the controller
    /// made itself (session records).
    pub controller_cert_pem: String,
}

/// Who signed an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signer {
    /// The agent named by the item, with the key its certificate in `agents` certifies.
    Agent,
    /// The controller, with the key `controller_cert_pem` certifies (session records).
    Controller,
}

impl Signer {
    pub fn of_kind(kind: &str) -> Signer {
        if crate::records::controller_made(kind) {
            Signer::Controller
        } else {
            Signer::Agent
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub from: Tier,
    pub to: Tier,
    pub note: String,
    pub by: String,
    pub at_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleItem {
    /// Hex SHA-256 of the item's bytes; the file is `items/<sha256>`.
    pub sha256: String,
    /// `snapshot` (a `Snapshot` as JSON), `script_run` (a `RunRecord` as JSON),
    /// `file`, `file_manifest`, or `session` (a session record the controller made).
    pub kind: String,
    pub size_bytes: u64,
    pub agent: Option<String>,
    pub created_at_secs: u64,
    pub signer: Signer,
    /// The signer's signature over the SHA-256 digest (hex, ECDSA P-256 ASN.1 DER): the
    /// agent's, made before the item left the machine, or the controller's for the
    /// records it made. `verify` refuses an item without one.
    pub signature: Option<String>,
    /// Redaction rules the agent applied before sending (empty when none).
    pub redaction: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleAgent {
    pub id: String,
    pub hostname: String,
    /// The certificate the controller issued to this agent (PEM).
    pub cert_pem: String,
}
