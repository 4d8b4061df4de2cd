//! The controller's store: agents, technicians, tokens, tickets, evidence records and
//! the hash-chained timeline, behind this one interface, on either of two engines:
//!
//! - **SQLite** (WAL) in the data directory, the embedded default: one controller.
//! - **PostgreSQL** (`[store] url` in `controller.toml`): several controllers share one
//!   database. Every write transaction takes one advisory lock first, so writes are
//!   serialized across the cluster as SQLite serializes them on one node (why, and the
//!   reconnect rule, in `pg.rs`).
//!
//! Every method is written once against [`sql::Sql`] (`sql.rs`): `?N` placeholders,
//! [`sql::Value`] parameters, rows with typed getters; the migrations in `schema.rs`
//! are SQL both engines accept (SQLite tracks their version in `PRAGMA user_version`,
//! PostgreSQL in a one-row table), and a database newer than the binary is refused on
//! both ([`StoreError::TooNew`]). Engine differences the statements avoid: SQLite's
//! case-insensitive `LIKE`, `SUM` of `BIGINT` being `NUMERIC` on PostgreSQL (cast it),
//! `INSERT OR …` (use `ON CONFLICT`), `last_insert_rowid` (compute ids in the
//! transaction), boolean columns (stored as 0/1 `BIGINT`; `IS NULL` and `EXISTS` read
//! as booleans on both), and text ordering, which follows the database's collation on
//! PostgreSQL.
//!
//! Calls are synchronous; async code goes through [`Store::run`], which moves them to
//! the blocking pool so the database never stalls the reactor.

mod asks;
pub mod backup;
pub mod blobs;
mod certs;
mod cluster;
mod codes;
mod console;
mod db;
mod deliveries;
mod location;
mod outbox;
mod pg;
mod schema;
mod scripts;
pub mod sql;
#[cfg(test)]
pub(crate) mod testing;
mod tickets;
mod timeline;
mod value;
mod visibility;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deskside_proto::evidence::EvidenceKind;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{AgentSummary, EvidenceRef, TicketSummary, TimelineEntry};

pub use asks::{AskOutcome, NewAsk};
pub use certs::Credentials;
pub use cluster::NodeRow;
pub use console::{AuditLine, ConsoleLogin, ConsoleSession, SignInState};
pub use db::Db;
pub use deliveries::Delivered;
pub use location::AgentLocation;
pub use pg::PgUrl;
pub use scripts::StoredScript;
pub use tickets::{NewTicket, PRIORITIES};
pub use timeline::{GENESIS_HASH, entry_hash};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The message says it all (the server's words); no source, so it is not repeated.
    #[error("database error (PostgreSQL): {}", pg::describe(.0))]
    Postgres(postgres::Error),
    #[error(
        "cannot reach PostgreSQL at {target}: {}; check [store] url in controller.toml, that the server runs, and that it lets this host in (pg_hba.conf, the password)", pg::describe(.cause)
    )]
    Connect {
        /// The URL without its password.
        target: String,
        cause: postgres::Error,
    },
    #[error(
        "column {index} of a database row holds {found} where {expected} was expected; was the database changed by hand?"
    )]
    Column {
        index: usize,
        expected: &'static str,
        found: &'static str,
    },
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

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::Postgres(e)
    }
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

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAt {
    /// A SQLite file (the data directory's `deskside.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by every node.
    Postgres(PgUrl),
}

/// The store's location as an admin reads it: a path, or the URL without its password.
impl std::fmt::Display for StoreAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreAt::Sqlite(path) => write!(f, "SQLite {}", path.display()),
            StoreAt::Postgres(url) => write!(f, "PostgreSQL {url}"),
        }
    }
}

/// Shared handle to the database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Mutex<Db>>,
}

impl Store {
    /// Opens (creating and migrating if needed) the SQLite database at `path`.
    pub fn open(path: &Path) -> StoreResult<Store> {
        Ok(Store {
            db: Arc::new(Mutex::new(Db::open(path)?)),
        })
    }

    /// Opens (creating and migrating if needed) the store wherever `at` says. Callers
    /// with a data directory use [`crate::datadir::DataDir::open_store`].
    pub fn open_at(at: &StoreAt) -> StoreResult<Store> {
        Ok(Store {
            db: Arc::new(Mutex::new(Db::open_at(at)?)),
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
