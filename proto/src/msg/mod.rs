//! Message types, one module per conversation.

pub mod agent;
pub mod diag;
pub mod enroll;
pub mod files;
pub mod hello;
pub mod identity;
pub mod script;
pub mod session;
pub mod tech;
