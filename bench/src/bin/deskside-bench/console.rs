//! The web console with a real fleet: `deskside-swarm --console --hold` keeps a release
//! controller serving the console with thousands of simulated agents connected; tickets
//! are opened through the technician client, a technician signs in through the setup
//! link, and the pages are timed over HTTPS and rendered in headless Chromium.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use deskside_controller::client::TechClient;
use deskside_controller::profile::Profile;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::Bins;
use crate::browser::{self, Renders};
use crate::console_http::Console;
use crate::procfs::rss_bytes;
use crate::stats::Samples;

/// Tickets opened at once over the one technician connection.
pub(crate) const TICKET_CONCURRENCY: usize = 32;

/// How big and how often.
#[derive(Debug, Clone, Copy)]
pub struct ConsolePlan {
    pub agents: u64,
    /// Agents with a stored snapshot (pulled by `deskside diag --all`).
    pub snapshots: u64,
    pub tickets: u64,
    /// Timed requests per page.
    pub runs: usize,
    /// Timed navigations per page in Chromium.
    pub browser_runs: usize,
}

/// What `deskside-swarm --hold` prints (its `hold::Held`).
#[derive(Debug, Deserialize)]
struct Held {
    agents: u64,
    connected: u64,
    connect_secs: f64,
    controller_pid: u32,
    console: Option<String>,
    config: PathBuf,
    data: PathBuf,
    technician: String,
    profile: PathBuf,
    fanout_ticket: u64,
    snapshot_agents: Vec<String>,
}

/// The holding swarm; dropping it closes its stdin (it then stops) and waits.
struct Swarm {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn hold(bins: &Bins, plan: &ConsolePlan) -> Result<(Swarm, Held)> {
    let exe = bins.dir.join("deskside-swarm");
    let mut child = Command::new(&exe)
        .args(["--agents", &plan.agents.to_string()])
        .args(["--fanout", &plan.snapshots.to_string()])
        .args(["--idle-secs", "0", "--console", "--hold"])
        .arg("--controller-bin")
        .arg(bins.dir.join("deskside"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("the swarm's stdout")?;
    let swarm = Swarm { child, stdin };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim().is_empty() {
        bail!("deskside-swarm --hold stopped before it was ready (see its output above)");
    }
    let held: Held = serde_json::from_str(line.trim()).context("the swarm's hold line")?;
    Ok((swarm, held))
}

/// Opens `n` tickets as the technician, [`TICKET_CONCURRENCY`] at a time, each on one of
/// `agents` in turn; returns the last ticket's number.
async fn open_tickets(client: &Arc<TechClient>, n: u64, agents: &[String]) -> Result<u64> {
    let mut tasks = JoinSet::new();
    let mut last = 0;
    let mut next = 0u64;
    loop {
        while tasks.len() < TICKET_CONCURRENCY && next < n {
            let (client, i) = (client.clone(), next);
            let agent = agents
                .get(usize::try_from(i).unwrap_or(0) % agents.len().max(1))
                .cloned();
            next += 1;
            tasks.spawn(async move {
                let req = TechRequest::NewTicket {
                    title: format!("benchmark ticket {i}: printer offline after update"),
                    agent,
                    requester: format!("user{i}@example.org"),
                    priority: match i % 4 {
                        0 => "low",
                        1 => "normal",
                        2 => "high",
                        _ => "urgent",
                    }
                    .into(),
                };
                match client.request(&req).await? {
                    TechReply::Ticket(v) => Ok(v.ticket.number),
                    other => bail!("the controller did not open a ticket: {other:?}"),
                }
            });
        }
        let Some(done) = tasks.join_next().await else {
            return Ok(last);
        };
        last = last.max(done??);
    }
}

/// The measured ticket: a snapshot of `agent` and two notes on it, as an L1 works.
async fn work_ticket(client: &TechClient, ticket: u64, agent: &str) -> Result<()> {
    let diag = TechRequest::Diagnostics {
        agent: agent.to_owned(),
        ticket,
    };
    if !matches!(client.request(&diag).await?, TechReply::Diagnostics(_)) {
        bail!("no snapshot stored on ticket #{ticket}");
    }
    for text in [
        "called the user; printer shows offline since this morning's update",
        "snapshot attached; queue looks stuck",
    ] {
        let note = TechRequest::Note {
            number: ticket,
            text: text.into(),
        };
        client.request(&note).await?;
    }
    Ok(())
}

/// `deskside console add TECH` on the controller's config and data: the setup link.
fn setup_link(bins: &Bins, held: &Held) -> Result<String> {
    let out = Command::new(bins.dir.join("deskside"))
        .arg("--config")
        .arg(&held.config)
        .arg("--data")
        .arg(&held.data)
        .args(["console", "add", &held.technician])
        .output()
        .context("running deskside console add")?;
    crate::sshd::check(&out, "deskside console add")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.contains("/setup/"))
        .map(str::to_owned)
        .with_context(|| format!("no setup link in `deskside console add`'s output: {text}"))
}

/// One page's server times.
pub struct PageTimes {
    pub what: String,
    pub path: String,
    pub samples: Samples,
    pub bytes: usize,
}

/// Everything the console measure found.
pub struct ConsoleRun {
    pub agents: u64,
    pub connected: u64,
    pub snapshots: u64,
    pub tickets: u64,
    pub tickets_secs: f64,
    /// Seconds the swarm took to connect.
    pub setup_secs: f64,
    pub pages: Vec<PageTimes>,
    pub rss_idle: u64,
    pub rss_after: u64,
    /// (path, renders) or why Chromium was not measured.
    pub renders: Result<Vec<(String, Renders)>>,
}

pub async fn run(bins: &Bins, plan: ConsolePlan) -> Result<ConsoleRun> {
    let started = Instant::now();
    let (swarm, held) = tokio::task::block_in_place(|| hold(bins, &plan))?;
    let console = held
        .console
        .clone()
        .context("the swarm's controller serves no console")?;
    let snapshot_agent = held
        .snapshot_agents
        .first()
        .cloned()
        .context("the swarm stored no snapshot")?;
    eprintln!(
        "console: {}/{} agents connected in {:.1} s; controller with console on {console}",
        held.connected, held.agents, held.connect_secs
    );
    let rss_idle = rss_bytes(held.controller_pid)?;

    let client = Arc::new(TechClient::connect(&Profile::load(&held.profile)?).await?);
    let opened = Instant::now();
    let ticket = open_tickets(&client, plan.tickets.max(1), &held.snapshot_agents).await?;
    let tickets_secs = opened.elapsed().as_secs_f64();
    eprintln!(
        "console: opened {} tickets in {tickets_secs:.1} s",
        plan.tickets.max(1)
    );
    work_ticket(&client, ticket, &snapshot_agent).await?;

    let link = setup_link(bins, &held)?;
    let ca = held.data.join("ca.crt");
    let technician = held.technician.clone();
    let paths = [
        ("agents page (default filter, page 1)", "/agents".to_owned()),
        (
            "agents page (search + filters)",
            "/agents?q=swarm-1&state=online&os=debian&sort=last_seen".to_owned(),
        ),
        (
            "agent page (with a snapshot)",
            format!("/agents/{snapshot_agent}"),
        ),
        (
            "ticket page (snapshot, notes)",
            format!("/tickets/{ticket}"),
        ),
        ("tickets list", "/tickets".to_owned()),
    ];
    let runs = plan.runs;
    let (session, base, pages) = tokio::task::spawn_blocking(move || -> Result<_> {
        let console = Console::sign_up_and_in(&ca, &link, &technician)?;
        let mut pages = Vec::new();
        for (what, path) in paths {
            eprintln!("console: GET {path} × {runs}…");
            let (samples, bytes) = console.time(&path, runs)?;
            pages.push(PageTimes {
                what: what.into(),
                path,
                samples,
                bytes,
            });
        }
        Ok((console.session.clone(), console.base().to_owned(), pages))
    })
    .await??;
    let rss_after = rss_bytes(held.controller_pid)?;

    let browsed = ["/agents".to_owned(), format!("/agents/{snapshot_agent}")];
    eprintln!("console: first render in Chromium…");
    let renders = browser::first_render(
        &base,
        &session,
        &browsed.iter().map(String::as_str).collect::<Vec<_>>(),
        plan.browser_runs,
    )
    .await
    .map(|r| browsed.into_iter().zip(r).collect());
    if let Err(e) = &renders {
        eprintln!("console: Chromium not measured: {e:#}");
    }
    if let Ok(c) = Arc::try_unwrap(client) {
        c.close().await;
    }
    drop(swarm);
    eprintln!(
        "console: done in {:.0} s (fan-out ticket #{})",
        started.elapsed().as_secs_f64(),
        held.fanout_ticket
    );
    Ok(ConsoleRun {
        agents: held.agents,
        connected: held.connected,
        snapshots: plan.snapshots,
        tickets: plan.tickets.max(1),
        tickets_secs,
        setup_secs: held.connect_secs,
        pages,
        rss_idle,
        rss_after,
        renders,
    })
}
