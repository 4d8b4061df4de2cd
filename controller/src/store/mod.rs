//! The controller's store: agents, technicians, tokens, tickets, evidence records and
//! the hash-chained timeline. SQLite (WAL) today, behind this one interface.
//!
//! Calls are synchronous; async code goes through [`Store::run`], which moves them to
//! the blocking pool so SQLite never stalls the reactor.

mod asks;
pub mod backup;
mod certs;
mod cluster;
mod codes;
mod console;
mod deliveries;
mod location;
mod outbox;
mod schema;
mod scripts;
mod sqlite;
mod tickets;
mod timeline;
mod visibility;

use std::path::Path;
use std::sync::{Arc, Mutex};

use deskside_proto::evidence::EvidenceKind;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{AgentSummary, EvidenceRef, TicketSummary, TimelineEntry};

pub use asks::{AskOutcome, NewAsk};
pub use certs::Credentials;
pub use cluster::NodeRow;
pub use console::{AuditLine, ConsoleLogin, ConsoleSession, SignInState};
pub use deliveries::Delivered;
pub use location::AgentLocation;
pub use scripts::StoredScript;
pub use sqlite::Db;
pub use tickets::{NewTicket, PRIORITIES};
pub use timeline::{GENESIS_HASH, entry_hash};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(
        "the database is newer (schema {found}) than this controller knows ({known}); upgrade deskside"
    )]
    TooNew { found: i64, known: i64 },
    #[error("the database worker stopped: {0}")]
    Worker(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What kind of identity a token enrolls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFor {
    Agent,
    Technician(String),
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub secret_sha256: String,
    pub for_: TokenFor,
    pub created_at: u64,
    pub expires_at: u64,
}

/// Why a token could not be redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeem {
    Unknown,
    Expired { at: u64 },
    Used { at: u64 },
}

#[derive(Debug, Clone)]
pub struct NewAgent {
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub cert_sha256: String,
    pub cert_pem: String,
    pub cert_not_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Technician {
    pub name: String,
    pub tier: Tier,
    pub cert_sha256: Option<String>,
    /// The certificate renewal replaced, still accepted until it expires.
    pub prev_cert_sha256: Option<String>,
    pub revoked: bool,
}

/// An evidence item to record on a ticket, already durable in the blob store.
#[derive(Debug, Clone)]
pub struct NewEvidence {
    pub sha256: String,
    pub kind: EvidenceKind,
    pub size_bytes: u64,
    pub agent_id: Option<String>,
    /// The agent's signature over the digest (hex), when the agent made the item.
    pub signature: Option<String>,
    /// Redaction rules the agent applied.
    pub redaction: Vec<String>,
}

/// An agent seen by the server: its check-in when it connects, or a later moment it
/// was seen (a delivery, its disconnect).
#[derive(Debug, Clone)]
pub enum Sighting {
    CheckIn {
        id: String,
        hostname: String,
        os: String,
        kernel: String,
        version: String,
        at_secs: u64,
    },
    Seen {
        id: String,
        at_secs: u64,
    },
}

/// One timeline event to append.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub actor: &'a str,
    pub kind: &'a str,
    pub detail: &'a str,
    pub evidence_sha256: Option<&'a str>,
}

/// Shared handle to the database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Mutex<Db>>,
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Store> {
        Ok(Store {
            db: Arc::new(Mutex::new(Db::open(path)?)),
        })
    }

    /// Runs `f` on the database on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = db
                .lock()
                .map_err(|_| StoreError::Worker("a previous database call panicked".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    /// Runs `f` on the calling thread (for CLI commands with no runtime).
    pub fn blocking<T>(&self, f: impl FnOnce(&mut Db) -> StoreResult<T>) -> StoreResult<T> {
        let mut guard = self
            .db
            .lock()
            .map_err(|_| StoreError::Worker("a previous database call panicked".into()))?;
        f(&mut guard)
    }
}

/// Rows as the protocol shows them.
pub type Agents = Vec<AgentSummary>;
pub type Tickets = Vec<TicketSummary>;
pub type Timeline = Vec<TimelineEntry>;
pub type Evidence = Vec<EvidenceRef>;
