//! External ticket systems. An escalation's bundle is pushed to the help desk's own
//! ticket system by an adapter: Request Tracker ([`rt`]) or a generic signed webhook
//! ([`webhook`]). Adapters are blocking (plain HTTP with timeouts); the outbox calls
//! them on the blocking pool and retries failures.

pub mod bundle_files;
pub mod config;
pub mod http;
pub mod rt;
pub mod webhook;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::TicketSummary;

pub use config::{Backend, ConfigError, TicketingConfig, load};

/// One push of a Deskside ticket and its evidence bundle to the external system.
#[derive(Debug, Clone)]
pub struct SyncJob {
    /// The ticket as it is now; `external_ref` says whether the external ticket exists.
    pub ticket: TicketSummary,
    /// The tier the ticket is (being) escalated to: picks the queue.
    pub tier: Tier,
    pub note: String,
    /// An evidence bundle directory (see [`crate::bundle`]).
    pub bundle_dir: PathBuf,
    /// The same for every attempt of one outbox job, different between jobs: what an
    /// adapter marks its writes with so a retry finds them instead of repeating them.
    pub sync_id: u64,
}

/// What a successful sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The external ticket, e.g. `rt:42` or `webhook:hooks.example.org`.
    pub external_ref: String,
    /// One line for the timeline.
    pub detail: String,
    /// Where a person opens the external ticket, when the system has such a page.
    pub link: Option<String>,
}

/// An external ticket system. Blocking: async callers use `spawn_blocking`.
pub trait TicketSystem: Send + Sync + Debug {
    fn sync(&self, job: &SyncJob) -> Result<SyncOutcome, AdapterError>;
}

/// The adapter the config asks for, or `None` for backend `none`. `origin` names this
/// controller in what it writes to the external system (see [`rt`]).
pub fn from_config(config: &TicketingConfig, origin: &str) -> Option<Arc<dyn TicketSystem>> {
    match &config.backend {
        Backend::None => None,
        Backend::Rt(rt) => Some(Arc::new(rt::RtTicketSystem::new(rt.clone(), origin))),
        Backend::Webhook(hook) => Some(Arc::new(webhook::Webhook::new(hook.clone(), origin))),
    }
}

/// Why a sync failed. Each message names the system, the request and what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    #[error("reading the evidence bundle: {}: {source}", path.display())]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot reach {system} ({method} {url}): {source}; check its url in controller.toml and that it is running"
    )]
    Transport {
        system: &'static str,
        method: &'static str,
        url: String,
        source: Box<ureq::Error>,
    },
    /// The request went out but no answer came in time: it may or may not have been
    /// carried out, which is why every write is looked for before it is repeated.
    #[error(
        "no answer from {system} to {method} {url} within {secs} s; it may be overloaded, or a \
         proxy in front of it held the reply. The outbox retries and first looks for what this \
         request may have done; if {system} is often this slow, raise timeout_secs in \
         controller.toml"
    )]
    Timeout {
        system: &'static str,
        method: &'static str,
        url: String,
        secs: u64,
    },
    #[error("{system} answered HTTP {status} to {method} {url}{hint}: {body}")]
    Status {
        system: &'static str,
        method: &'static str,
        url: String,
        status: u16,
        hint: &'static str,
        /// The start of the response body, for the operator.
        body: String,
    },
    #[error("{system} gave an unexpected answer to {method} {url}: {reason}")]
    Protocol {
        system: &'static str,
        method: &'static str,
        url: String,
        reason: String,
    },
    /// The request "succeeded" but reading back shows it did not take effect.
    #[error("{0}")]
    Verify(String),
    /// The external ticket was created, then a later step failed. The reference is kept
    /// so the retry adds to that ticket instead of creating a second one.
    #[error("{source} (the external ticket {external_ref} was created; the retry reuses it)")]
    AfterCreate {
        external_ref: String,
        source: Box<AdapterError>,
    },
}

impl AdapterError {
    /// The external ticket this failed attempt created, to remember for the retry.
    pub fn created_ref(&self) -> Option<&str> {
        match self {
            AdapterError::AfterCreate { external_ref, .. } => Some(external_ref),
            _ => None,
        }
    }
}
