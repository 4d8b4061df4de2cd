//! The Deskside controller as a library: the server, its store and CA, and the
//! technician CLI. `main.rs` only parses arguments and maps errors to exit codes.

pub mod adapters;
pub mod backup;
pub mod bundle;
pub mod ca;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod console;
pub mod datadir;
pub mod evidence;
pub mod host;
pub mod metrics;
pub mod outbox;
pub mod profile;
pub mod records;
pub mod report;
pub mod request_key;
pub mod route;
pub mod server;
pub mod service;
pub mod sla;
pub mod starter;
pub mod store;
pub mod tokens;
mod writeback;
