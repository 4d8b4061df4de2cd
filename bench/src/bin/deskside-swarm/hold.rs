//! `--hold`: once the swarm is connected and the fan-out has stored its snapshots, the
//! controller and every agent stay up for another program to measure (the console
//! benchmark). One JSON line on stdout says where everything is; closing stdin ends it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::io::AsyncReadExt;

/// What a holding swarm tells the program that measures it (the shared interface with
/// `deskside-bench console`).
#[derive(Debug, Serialize)]
pub struct Held {
    pub agents: usize,
    pub connected: u64,
    pub connect_secs: f64,
    pub controller_pid: u32,
    /// The controller's QUIC address.
    pub addr: String,
    /// The web console's HTTPS address, when `--console` serves it.
    pub console: Option<String>,
    /// The controller's `--config` and `--data`, for admin commands.
    pub config: PathBuf,
    pub data: PathBuf,
    /// The technician's name and CLI profile (`DESKSIDE_PROFILE`).
    pub technician: String,
    pub profile: PathBuf,
    /// The ticket holding the fan-out's snapshots, and the agents that have one.
    pub fanout_ticket: u64,
    pub snapshot_agents: Vec<String>,
}

/// Prints `held` as one line and waits until stdin closes (or is unreadable).
pub async fn announce_and_wait(held: &Held) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string(held).context("encoding the hold line")?
    );
    eprintln!("holding: close stdin to stop the swarm and its controller");
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while stdin.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    Ok(())
}
