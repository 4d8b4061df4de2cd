//! Fan-out: `deskside diag --all` (the real CLI) over M agents against the baseline of M
//! single pulls one after another over one technician connection.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::cli::admin::make_token;
use deskside_controller::cli::tech::login_to;
use deskside_controller::client::TechClient;
use deskside_controller::datadir::DataDir;
use deskside_controller::profile::Profile;
use deskside_controller::store::{Store, TokenFor};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};

/// The technician's login token only has to last until the profile is saved.
const LOGIN_TTL: Duration = Duration::from_secs(600);

/// The technician the swarm adds (an L1).
pub const TECHNICIAN: &str = "swarm-tech";

/// Adds a technician on the controller's data dir and logs in; the profile is saved at
/// `path` for the CLI (`DESKSIDE_PROFILE`).
pub async fn technician(data: &DataDir, addr: &str, path: &Path) -> Result<Profile> {
    let name = TECHNICIAN;
    Store::open(&data.database())?.blocking(|db| db.insert_technician(name, Tier::L1))?;
    let token = make_token(data, TokenFor::Technician(name.into()), addr, LOGIN_TTL)?;
    login_to(&token, path).await
}

pub async fn new_ticket(client: &TechClient, title: &str) -> Result<u64> {
    match client
        .request(&TechRequest::NewTicket {
            title: title.into(),
            agent: None,
            requester: String::new(),
            priority: "normal".into(),
        })
        .await?
    {
        TechReply::Ticket(v) => Ok(v.ticket.number),
        _ => bail!("the controller did not open a ticket"),
    }
}

/// Evidence items stored on `ticket`, as the controller lists them.
pub async fn stored_on(client: &TechClient, ticket: u64) -> Result<usize> {
    match client
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    {
        TechReply::Ticket(v) => Ok(v.evidence.len()),
        _ => bail!("the controller did not show ticket #{ticket}"),
    }
}

/// Runs `deskside diag --all --match GLOB` as the technician; returns the wall time.
pub async fn parallel(
    bin: PathBuf,
    profile: PathBuf,
    ticket: u64,
    concurrency: u32,
    glob: String,
) -> Result<f64> {
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let started = Instant::now();
        let out = std::process::Command::new(&bin)
            .env("DESKSIDE_PROFILE", &profile)
            .args(["diag", "--all", "--ticket", &ticket.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--match", &glob, "--json"])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let secs = started.elapsed().as_secs_f64();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "diag --all printed no JSON (exit {:?}): {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        eprintln!(
            "diag --all: exit {:?}, summary {}",
            out.status.code(),
            doc.get("summary")
                .map(|s| {
                    let mut s = s.clone();
                    if let Some(o) = s.as_object_mut() {
                        o.remove("findings");
                    }
                    s.to_string()
                })
                .unwrap_or_default()
        );
        Ok(secs)
    })
    .await?
}

/// One `Diagnostics` request per agent, each awaited before the next; returns the wall
/// time and how many came back stored.
pub async fn sequential(client: &TechClient, agents: &[String], ticket: u64) -> (f64, usize) {
    let started = Instant::now();
    let mut stored = 0;
    for agent in agents {
        let req = TechRequest::Diagnostics {
            agent: agent.clone(),
            ticket,
        };
        if let Ok(TechReply::Diagnostics(_)) = client.request(&req).await {
            stored += 1;
        }
    }
    (started.elapsed().as_secs_f64(), stored)
}
