//! `deskside diag --all`: pull a snapshot from every selected agent over one technician
//! connection, a bounded number at a time, store each on the ticket, and sum up.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use deskside_proto::msg::diag::{Finding, Severity};
use deskside_proto::msg::tech::{AgentSummary, ErrorCode, TechReply, TechRequest};
use globset::{Glob, GlobMatcher};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{CliError, Shortfall};
use crate::client::TechClient;
use crate::profile::{self, Profile};

/// Pulls in flight at once unless `--concurrency` says otherwise: enough to hide one
/// agent's collection time behind others', well under the stream limit.
pub const DEFAULT_CONCURRENCY: u32 = 32;
/// The controller accepts this many concurrent request streams per connection
/// (`transport::tls::MAX_CONCURRENT_STREAMS`); more would only queue inside QUIC.
pub const MAX_CONCURRENCY: u32 = deskside_transport::tls::MAX_CONCURRENT_STREAMS;
/// Hostnames shown per finding in the human summary; the JSON has every agent.
const HOSTNAMES_SHOWN: usize = 3;

/// Which agents `--all` means.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--match`: a glob on the hostname or the agent id.
    pub hostname_glob: Option<String>,
    /// `--os`: case-insensitive substring of the OS name the agent checked in with.
    pub os: Option<String>,
}

/// A compiled [`Selection`].
#[derive(Debug)]
struct Filter {
    glob: Option<GlobMatcher>,
    os: Option<String>,
}

impl Filter {
    fn new(sel: &Selection) -> Result<Filter> {
        let glob = match &sel.hostname_glob {
            Some(g) => Some(
                Glob::new(g)
                    .with_context(|| format!("--match {g:?} is not a valid glob"))?
                    .compile_matcher(),
            ),
            None => None,
        };
        Ok(Filter {
            glob,
            os: sel.os.as_ref().map(|o| o.to_lowercase()),
        })
    }

    fn matches(&self, a: &AgentSummary) -> bool {
        let host_ok = self
            .glob
            .as_ref()
            .is_none_or(|g| g.is_match(&a.hostname) || g.is_match(&a.id));
        let os_ok = self
            .os
            .as_ref()
            .is_none_or(|o| a.os.to_lowercase().contains(o.as_str()));
        host_ok && os_ok && !a.revoked
    }
}

/// What happened with one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Stored,
    Refused,
    Failed,
    Offline,
}

/// One line of the `--json` `agents` list.
#[derive(Debug, Clone, Serialize)]
pub struct AgentResult {
    pub agent: String,
    pub hostname: String,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub evidence_sha256: Option<String>,
    pub findings: Vec<Finding>,
}

/// One finding code across machines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingGroup {
    pub code: String,
    pub severity: Severity,
    pub machines: usize,
    pub example: String,
    #[serde(skip)]
    pub hostnames: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub stored: usize,
    pub refused: usize,
    pub failed: usize,
    pub offline: usize,
    pub findings: Vec<FindingGroup>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    ticket: u64,
    selected: usize,
    elapsed_ms: u64,
    agents: &'a [AgentResult],
    summary: &'a Summary,
}

/// Counts outcomes and groups findings by code: worst severity first, then the code
/// seen on most machines, then by code. A machine counts once per code.
pub fn summarize(results: &[AgentResult]) -> Summary {
    let mut s = Summary::default();
    for r in results {
        match r.outcome {
            Outcome::Stored => s.stored += 1,
            Outcome::Refused => s.refused += 1,
            Outcome::Failed => s.failed += 1,
            Outcome::Offline => s.offline += 1,
        }
        let mut seen: Vec<&str> = Vec::new();
        for f in &r.findings {
            if seen.contains(&f.code.as_str()) {
                continue;
            }
            seen.push(&f.code);
            match s.findings.iter_mut().find(|g| g.code == f.code) {
                Some(g) => {
                    g.machines += 1;
                    g.severity = g.severity.max(f.severity);
                    g.hostnames.push(r.hostname.clone());
                }
                None => s.findings.push(FindingGroup {
                    code: f.code.clone(),
                    severity: f.severity,
                    machines: 1,
                    example: f.message.clone(),
                    hostnames: vec![r.hostname.clone()],
                }),
            }
        }
    }
    s.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.machines.cmp(&a.machines))
            .then(a.code.cmp(&b.code))
    });
    s
}

/// None when every selected agent stored a snapshot; otherwise the worst outcome: any
/// failure, else any refusal, else (only offline agents missing) offline.
pub fn shortfall(s: &Summary) -> Option<Shortfall> {
    if s.failed > 0 {
        Some(Shortfall::Failed)
    } else if s.refused > 0 {
        Some(Shortfall::Refused)
    } else if s.offline > 0 {
        Some(Shortfall::Offline)
    } else {
        None
    }
}

/// Maps one pull's answer to its outcome line.
fn classify(agent: &AgentSummary, answer: Result<TechReply>) -> AgentResult {
    let mut r = AgentResult {
        agent: agent.id.clone(),
        hostname: agent.hostname.clone(),
        outcome: Outcome::Failed,
        reason: None,
        evidence_sha256: None,
        findings: Vec::new(),
    };
    match answer {
        Ok(TechReply::Diagnostics(report)) => {
            let report = *report;
            r.outcome = Outcome::Stored;
            r.evidence_sha256 = Some(report.evidence.sha256);
            r.findings = report.snapshot.findings;
        }
        Ok(other) => {
            r.reason = Some(super::remote::unexpected(&other).to_string());
        }
        Err(e) => {
            let e = CliError::from(e);
            r.outcome = match &e {
                CliError::Controller(refused) => match refused.0.code {
                    ErrorCode::AgentRefused
                    | ErrorCode::AgentDisabled
                    | ErrorCode::NoSession
                    | ErrorCode::SessionExpired
                    | ErrorCode::Forbidden => Outcome::Refused,
                    ErrorCode::AgentOffline => Outcome::Offline,
                    _ => Outcome::Failed,
                },
                _ => Outcome::Failed,
            };
            r.reason = Some(e.to_string());
        }
    }
    r
}

fn progress(len: usize, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(u64::try_from(len).unwrap_or(u64::MAX)),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} agents  {elapsed} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// `deskside diag --all`.
pub async fn run(
    ticket: u64,
    sel: Selection,
    concurrency: u32,
    json: bool,
) -> Result<(), CliError> {
    let filter = Filter::new(&sel)?;
    let profile = Profile::load(&profile::default_path()?)?;
    let client = Arc::new(TechClient::connect(&profile).await?);
    let result = pull_all(&client, ticket, &filter, concurrency, json).await;
    if let Ok(client) = Arc::try_unwrap(client) {
        client.close().await;
    }
    let (selected, results, elapsed_ms) = result?;
    let summary = summarize(&results);
    if json {
        super::print_json(&Report {
            ticket,
            selected,
            elapsed_ms,
            agents: &results,
            summary: &summary,
        })?;
    } else {
        render(ticket, &results, &summary, elapsed_ms);
    }
    match shortfall(&summary) {
        None => Ok(()),
        Some(worst) => Err(CliError::DiagAll {
            worst,
            summary: format!(
                "{} of {selected} agents stored no snapshot ({} refused, {} failed, {} offline)",
                selected - summary.stored,
                summary.refused,
                summary.failed,
                summary.offline
            ),
        }),
    }
}

async fn pull_all(
    client: &Arc<TechClient>,
    ticket: u64,
    filter: &Filter,
    concurrency: u32,
    json: bool,
) -> Result<(usize, Vec<AgentResult>, u64)> {
    let list = match client.request(&TechRequest::ListAgents).await? {
        TechReply::Agents(list) => list,
        other => return Err(super::remote::unexpected(&other)),
    };
    let selected: Vec<AgentSummary> = list.into_iter().filter(|a| filter.matches(a)).collect();
    if selected.is_empty() {
        bail!(
            "no enrolled agent matches the selection (--match / --os); `deskside agents` lists them"
        );
    }
    let started = Instant::now();
    let bar = progress(selected.len(), json);
    let limit = Arc::new(Semaphore::new(
        usize::try_from(concurrency.clamp(1, MAX_CONCURRENCY)).unwrap_or(1),
    ));
    let mut results = Vec::with_capacity(selected.len());
    let mut tasks = JoinSet::new();
    for agent in &selected {
        if !agent.online {
            results.push(AgentResult {
                agent: agent.id.clone(),
                hostname: agent.hostname.clone(),
                outcome: Outcome::Offline,
                reason: Some("not connected; skipped".into()),
                evidence_sha256: None,
                findings: Vec::new(),
            });
            bar.inc(1);
            continue;
        }
        let (client, limit, agent) = (client.clone(), limit.clone(), agent.clone());
        tasks.spawn(async move {
            let answer = match limit.acquire_owned().await {
                Ok(_permit) => {
                    let req = TechRequest::Diagnostics {
                        agent: agent.id.clone(),
                        ticket,
                    };
                    client.request(&req).await.map_err(anyhow::Error::from)
                }
                Err(e) => Err(e.into()),
            };
            classify(&agent, answer)
        });
    }
    while let Some(done) = tasks.join_next().await {
        results.push(done.context("a diagnostics pull task failed")?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Stable output whatever order the pulls finished in.
    results.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.agent.cmp(&b.agent)));
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok((selected.len(), results, elapsed_ms))
}

fn render(ticket: u64, results: &[AgentResult], s: &Summary, elapsed_ms: u64) {
    println!(
        "{} agents in {:.1} s: {} stored on ticket #{ticket}, {} refused, {} failed, {} offline (skipped)",
        results.len(),
        elapsed_ms as f64 / 1000.0,
        s.stored,
        s.refused,
        s.failed,
        s.offline
    );
    for r in results.iter().filter(|r| r.outcome != Outcome::Stored) {
        let outcome = match r.outcome {
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Offline => "offline",
            Outcome::Stored => "stored",
        };
        println!(
            "  {outcome:<8} {} ({}): {}",
            r.hostname,
            r.agent,
            r.reason.as_deref().unwrap_or("")
        );
    }
    if s.findings.is_empty() {
        println!("no findings on any machine");
        return;
    }
    println!("findings across machines, worst first:");
    for g in &s.findings {
        let mut hosts = g
            .hostnames
            .iter()
            .take(HOSTNAMES_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if g.hostnames.len() > HOSTNAMES_SHOWN {
            hosts.push_str(", …");
        }
        println!(
            "  {:<8} {:<28} {:>5} machines  e.g. {}  [{hosts}]",
            g.severity, g.code, g.machines, g.example
        );
    }
}

#[cfg(test)]
mod tests;
