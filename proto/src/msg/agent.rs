//! Controller ↔ agent: the agent's check-in, and requests the controller sends down
//! streams it opens on the agent's connection.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::limits::{MAX_CONTROL_BYTES, MAX_REQUEST_BYTES, MAX_SNAPSHOT_BYTES};
use crate::msg::diag::Snapshot;
use crate::msg::identity::Tier;

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

/// Who is asking, on whose behalf the agent decides. The agent checks this against its
/// own policy; the controller's word alone never grants anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub technician: String,
    pub tier: Tier,
    pub ticket: u64,
}

/// A request from the controller to an agent; one per stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentRequest {
    Diagnostics { requester: Requester },
}

impl AgentRequest {
    /// The consent scope this request needs, as policy files name it.
    pub fn scope(&self) -> &'static str {
        match self {
            AgentRequest::Diagnostics { .. } => "diagnostics",
        }
    }
}

impl Message for AgentRequest {
    const KIND: &'static str = "agent request";
    const MAX_BYTES: u32 = MAX_REQUEST_BYTES;
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentReply {
    Snapshot(Box<Snapshot>),
    /// Local policy or the user said no; `reason` is shown to the technician verbatim.
    Refused {
        reason: String,
    },
    Failed {
        reason: String,
    },
}

impl Message for AgentReply {
    const KIND: &'static str = "agent reply";
    const MAX_BYTES: u32 = MAX_SNAPSHOT_BYTES;
}
