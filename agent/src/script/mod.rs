//! Remediation scripts on the agent: verify what the controller sent, then run it.

pub mod run;
pub mod verify;
