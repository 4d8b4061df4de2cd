//! The technician operations, each in one place: authority (revocation, tier), ticket
//! visibility, audit (the ticket's timeline), storage and the call to the agent.
//!
//! Every operation is a function taking the authenticated [`Principal`] and typed
//! arguments and returning a typed result or a [`Failure`]; `handle` is the one
//! dispatch from a [`TechRequest`](deskside_proto::msg::tech::TechRequest) to them. A front end — the QUIC technician connection
//! in `server/technician.rs` today — decodes a request, calls `handle` with a
//! [`ReplySink`] for the replies that stream (script output, file progress, bundle
//! files), and encodes what comes back. It adds no policy of its own.
//!
//! Agents are reached through [`AgentLink`] only ("send this request to agent X and await
//! its reply"); the live connections behind it are the server's business.

pub(crate) mod agents;
pub(crate) mod bundles;
pub(crate) mod collect;
mod common;
pub(crate) mod diagnostics;
mod dispatch;
pub(crate) mod events;
mod intake;
mod link;
mod notices;
pub(crate) mod renew;
pub(crate) mod scripts;
mod seen;
pub(crate) mod selfservice;
pub(crate) mod sessions;
mod throttle;
pub(crate) mod tickets;

pub(crate) use common::Shared;
pub use common::{AGENT_TIMEOUT, DIAG_TIMEOUT, Failure, Principal, ReplySink};
pub(crate) use dispatch::{handle, outcome_of};
pub use events::{Event, Events};
pub use link::{AgentLink, AgentStream, CallError, Pending};
pub(crate) use notices::agent_notice;
pub(crate) use seen::Seen;
pub(crate) use throttle::JoinThrottle;
pub use throttle::{
    FIRST_BACKOFF, FREE_WRONG_CODES, GLOBAL_MAX_WRONG, GLOBAL_WINDOW, LOCKOUT, LOCKOUT_AFTER,
    WRONG_CODE_MEMORY,
};

#[cfg(test)]
mod tests;
