//! The Deskside agent as a library: the binary is a thin shell over it, and the
//! controller's demo and the end-to-end tests run the same code in-process.

pub mod audit;
pub mod backoff;
pub mod cli;
pub mod collect;
pub mod config;
pub mod consent;
pub mod control;
pub mod deliver;
pub mod diag;
pub mod enroll;
pub mod failover;
pub mod link;
pub mod local_user;
pub mod os;
pub mod policy;
pub mod redact;
pub mod renew;
pub mod script;
pub mod self_check;
pub mod selfhelp;
pub mod serve;
pub mod session;
pub mod spool;
pub mod state;

pub use deskside_transport::clock::{now_ms, now_secs};

pub use deskside_transport::error::chain as error_chain;

/// Hostname, OS pretty name and kernel release, cheaply, for enrollment and check-in.
pub fn host_identity() -> (String, String, String) {
    let os = diag::os_pretty_name().unwrap_or_else(|| std::env::consts::OS.to_owned());
    (
        os::hostname().unwrap_or_default(),
        os,
        os::kernel_release().unwrap_or_default(),
    )
}
