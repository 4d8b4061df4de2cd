//! Several controller nodes on one store, in this process: a second node beside a
//! [`Cluster`]'s own, with its own data directory holding a copy of the first's keys, and
//! the first's store and evidence directory shared: the first's PostgreSQL database when
//! it has one (`Cluster::start_postgres`, or `DESKSIDE_TEST_STORE=postgres`), else its
//! SQLite file (WAL lets several connections use it on one host), reached through a link
//! in the node's data directory.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::client::TechClient;
use deskside_controller::cluster::ClusterConfig;
use deskside_controller::datadir::DataDir;
use deskside_controller::profile::Profile;
use deskside_controller::server::{self, Running};
use deskside_controller::store::{StoreAt, TokenFor};
use deskside_proto::msg::tech::{TechReply, TechRequest};

use crate::Cluster;

/// A node beside the cluster's first controller.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub data: DataDir,
    pub running: Option<Running>,
    pub addr: String,
}

impl Node {
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.stopped().await;
        }
    }

    /// `/metrics` and `/health` of this node, when started with a metrics address.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.running.as_ref().and_then(|r| r.metrics_addr)
    }
}

/// Options naming the node `name`, with its heartbeat every `heartbeat` and metrics on
/// an ephemeral loopback port.
pub fn node_options(name: &str, heartbeat: Duration) -> server::Options {
    server::Options {
        metrics_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        cluster: ClusterConfig {
            node: Some(name.to_owned()),
            ..ClusterConfig::default()
        },
        heartbeat,
        ..server::Options::default()
    }
}

impl Cluster {
    /// A data directory for another node: a copy of this controller's keys, and its
    /// store (the same PostgreSQL database, or the same SQLite file through a symlink)
    /// and evidence shared.
    pub fn node_data(&self, name: &str) -> Result<DataDir> {
        let root = self.dir.path().join(format!("node-{name}"));
        std::fs::create_dir_all(&root)?;
        let first = self.data.root();
        let shared = |p: &Path| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("deskside.db") || n == "evidence")
        };
        for entry in std::fs::read_dir(first)? {
            let path = entry?.path();
            if path.is_file() && !shared(&path) {
                let to = root.join(path.file_name().context("a file without a name")?);
                std::fs::copy(&path, &to)
                    .with_context(|| format!("copying {} to {}", path.display(), to.display()))?;
            }
        }
        let node = match self.data.store_at() {
            StoreAt::Postgres(url) => DataDir::new(&root).with_store(Some(url)),
            StoreAt::Sqlite(file) => {
                let node = DataDir::new(&root);
                std::os::unix::fs::symlink(file, node.database())?;
                node
            }
        };
        std::os::unix::fs::symlink(self.data.evidence(), node.evidence())?;
        Ok(node)
    }

    /// Starts another node named `name` on this cluster's store, with `options`.
    pub async fn start_node(&self, name: &str, options: server::Options) -> Result<Node> {
        let data = self.node_data(name)?;
        let options = server::Options {
            listen: "127.0.0.1:0".parse()?,
            ..options
        };
        let running = server::start_with(&data, &options).await?;
        let addr = running.addr.to_string();
        Ok(Node {
            name: name.to_owned(),
            data,
            running: Some(running),
            addr,
        })
    }

    /// A token listing `controllers`, for an agent of a cluster.
    pub fn cluster_token(&self, controllers: &[String], ttl: Duration) -> Result<String> {
        deskside_controller::cli::admin::make_cluster_token(
            &self.data,
            TokenFor::Agent,
            controllers,
            ttl,
        )
    }
}

/// A technician client of `profile` talking to the node at `addr` only.
pub async fn technician_at(profile: &Profile, addr: &str) -> Result<TechClient> {
    let mut at = profile.clone();
    at.controllers = vec![addr.to_owned()];
    Ok(TechClient::connect(&at).await?)
}

/// Whether the node `client` talks to holds `agent`'s connection.
pub async fn holds(client: &TechClient, agent: &str) -> Result<bool> {
    match client.request(&TechRequest::ListAgents).await? {
        TechReply::Agents(list) => Ok(list.iter().any(|a| a.id == agent && a.online)),
        other => bail!("unexpected reply to ListAgents: {other:?}"),
    }
}

/// Waits until one of `clients` (one per node) holds `agent`; returns its index.
pub async fn wait_held(clients: &[&TechClient], agent: &str, bound: Duration) -> Result<usize> {
    let start = Instant::now();
    loop {
        for (i, c) in clients.iter().enumerate() {
            if holds(c, agent).await? {
                return Ok(i);
            }
        }
        if start.elapsed() > bound {
            bail!("agent {agent} reached no node within {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
