//! `--nodes FILE`: the swarm spread over controller nodes that are already running
//! (`deskside-bench cluster` starts them): each node's share of the agents enrolled
//! through it and connected to it, then each node's RSS and idle CPU. The file says
//! where the nodes are and where their shared store lives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::datadir::DataDir;
use deskside_controller::store::PgUrl;
use serde::{Deserialize, Serialize};

use crate::swarm::{Platform, Swarm};
use crate::{controller, enroll};

/// Longest wait for every node's share to connect.
const CONNECT_LIMIT: Duration = Duration::from_secs(900);
/// How often the nodes' gauges are read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// What `--nodes FILE` holds (JSON), written by `deskside-bench cluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesFile {
    /// A data directory holding the cluster's keys; tokens are made in its store.
    pub data: PathBuf,
    /// The shared store's `[store] url`; `None` for SQLite in `data`.
    pub store: Option<String>,
    pub nodes: Vec<NodeAt>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeAt {
    pub name: String,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub pid: u32,
}

/// What the swarm prints with `--nodes` (one JSON object).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesReport {
    pub agents: usize,
    pub connected: u64,
    pub enroll_secs: f64,
    pub connect_secs: f64,
    pub idle_secs: u64,
    pub swarm_rss_bytes: u64,
    pub nodes: Vec<NodeFigures>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFigures {
    pub name: String,
    pub agents_connected: u64,
    pub rss_bytes: u64,
    pub cpu_pct_idle: f64,
}

/// The connected-agents gauge of the node whose metrics are at `metrics`.
async fn connected(metrics: SocketAddr) -> Result<u64> {
    let text = tokio::task::spawn_blocking(move || -> Result<String> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        Ok(agent
            .get(&format!("http://{metrics}/metrics"))
            .call()?
            .body_mut()
            .read_to_string()?)
    })
    .await??;
    text.lines()
        .find_map(|l| l.strip_prefix("deskside_agents_connected "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("no deskside_agents_connected in the metrics")
}

async fn total(nodes: &[NodeAt]) -> u64 {
    let mut sum = 0;
    for n in nodes {
        sum += connected(n.metrics).await.unwrap_or(0);
    }
    sum
}

/// Enrolls and connects `agents` simulated agents, an even share per node, samples each
/// node for `idle_secs`, and stops them.
pub async fn run(file: &Path, agents: usize, idle_secs: u64) -> Result<NodesReport> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let spec: NodesFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    if spec.nodes.is_empty() {
        bail!("{} names no node", file.display());
    }
    let store = spec
        .store
        .as_deref()
        .map(PgUrl::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{}: store: {e}", file.display()))?;
    let data = DataDir::new(&spec.data).with_store(store);
    let fixed = Arc::new(deskside_agent::diag::snapshot().await);
    let platform = Platform {
        os: fixed.os.pretty_name.clone(),
        kernel: fixed.os.kernel.clone(),
    };
    let count = spec.nodes.len();
    let started = Instant::now();
    let mut shares = Vec::new();
    for (i, node) in spec.nodes.iter().enumerate() {
        let names: Vec<String> = (0..agents)
            .filter(|k| k % count == i)
            .map(|k| format!("{}-{k:05}", node.name))
            .collect();
        let enrolled =
            enroll::enroll_all(&data, &node.addr.to_string(), names, &platform.os).await?;
        shares.push((node.addr, enrolled));
    }
    let enroll_secs = started.elapsed().as_secs_f64();
    eprintln!("enrolled {agents} agents over {count} nodes in {enroll_secs:.1} s");

    let started = Instant::now();
    let mut swarms = Vec::new();
    for (addr, enrolled) in shares {
        swarms.push(Swarm::start(enrolled, addr, fixed.clone(), &platform)?);
    }
    let mut seen = 0;
    let mut shown = Instant::now();
    while started.elapsed() < CONNECT_LIMIT {
        seen = total(&spec.nodes).await;
        if seen >= agents as u64 {
            break;
        }
        if shown.elapsed() >= Duration::from_secs(5) {
            shown = Instant::now();
            eprintln!(
                "  {:>5.1} s: {seen}/{agents} connected",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    eprintln!("{seen}/{agents} connected in {connect_secs:.1} s");

    let pids: Vec<String> = spec.nodes.iter().map(|n| n.pid.to_string()).collect();
    let before = pids
        .iter()
        .map(|p| controller::usage(p))
        .collect::<Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let mut nodes = Vec::new();
    for ((node, pid), before) in spec.nodes.iter().zip(&pids).zip(before) {
        let after = controller::usage(pid)?;
        let cpu = after.cpu.saturating_sub(before.cpu).as_secs_f64();
        nodes.push(NodeFigures {
            name: node.name.clone(),
            agents_connected: connected(node.metrics).await.unwrap_or(0),
            rss_bytes: after.rss_bytes,
            cpu_pct_idle: 100.0 * cpu / idle_secs.max(1) as f64,
        });
    }
    let swarm_rss_bytes = controller::usage("self")?.rss_bytes;
    for swarm in swarms {
        swarm.stop().await;
    }
    Ok(NodesReport {
        agents,
        connected: seen,
        enroll_secs,
        connect_secs,
        idle_secs,
        swarm_rss_bytes,
        nodes,
    })
}
