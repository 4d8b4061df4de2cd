//! Each node's heartbeat: every [`super::HEARTBEAT_INTERVAL`] it writes its row (name,
//! address, start, agents online, version) to the shared store; the cluster view reads
//! every row back with each node's up/down state.

use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::NodeState;
use crate::clock::now_secs;
use crate::store::{NodeRow, Store, StoreResult};

/// One node as `deskside status` and `/health` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub state: NodeState,
    pub agents_online: u64,
    /// Unix seconds of its last heartbeat.
    pub heartbeat_at: u64,
    pub started_at: u64,
    pub version: String,
}

/// This node and every node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterView {
    pub node: String,
    pub nodes: Vec<NodeStatus>,
}

impl ClusterView {
    /// The cluster as the store has it at `now`.
    pub fn from_rows(node: &str, rows: Vec<NodeRow>, now: u64, interval: Duration) -> ClusterView {
        ClusterView {
            node: node.to_owned(),
            nodes: rows
                .into_iter()
                .map(|r| NodeStatus {
                    state: NodeState::of(r.heartbeat_at, now, interval),
                    name: r.name,
                    address: r.address,
                    agents_online: r.agents_online,
                    heartbeat_at: r.heartbeat_at,
                    started_at: r.started_at,
                    version: r.version,
                })
                .collect(),
        }
    }

    /// Reads the cluster from `store`.
    pub async fn read(store: &Store, node: &str, interval: Duration) -> StoreResult<ClusterView> {
        let rows = store.run(|db| db.nodes()).await?;
        Ok(ClusterView::from_rows(node, rows, now_secs(), interval))
    }

    /// How many nodes are in `state`.
    pub fn count(&self, state: NodeState) -> usize {
        self.nodes.iter().filter(|n| n.state == state).count()
    }
}

/// Writes this node's heartbeat now and then every `interval` until `cancel`; `agents`
/// is the gauge of agents connected here.
pub fn spawn_heartbeat(
    store: Store,
    node: String,
    address: String,
    agents: Gauge,
    interval: Duration,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let started_at = now_secs();
    tokio::spawn(async move {
        // Two nodes under one name would overwrite each other's row: say so.
        if let Ok(view) = ClusterView::read(&store, &node, interval).await
            && let Some(other) = view
                .nodes
                .iter()
                .find(|n| n.name == node && n.state == NodeState::Up && n.address != address)
        {
            warn!(
                node = %node,
                other = %other.address,
                "another node with this name is up; give each node its own [cluster] node"
            );
        }
        let mut failing = false;
        loop {
            let row = NodeRow {
                name: node.clone(),
                address: address.clone(),
                started_at,
                heartbeat_at: now_secs(),
                agents_online: u64::try_from(agents.get()).unwrap_or(0),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            match store.run(move |db| db.node_beat(&row)).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    warn!(node = %node, error = %e, "heartbeat not written; other nodes will show this one down");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, at: u64) -> NodeRow {
        NodeRow {
            name: name.into(),
            address: format!("{name}:4433"),
            started_at: 1,
            heartbeat_at: at,
            agents_online: 2,
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn a_node_silent_for_three_intervals_shows_down() {
        let view = ClusterView::from_rows(
            "ctl-a",
            vec![row("ctl-a", 1000), row("ctl-b", 990), row("ctl-c", 984)],
            1000,
            Duration::from_secs(5),
        );
        let states: Vec<_> = view
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("ctl-a", NodeState::Up),
                ("ctl-b", NodeState::Up),
                ("ctl-c", NodeState::Down)
            ]
        );
        assert_eq!(view.count(NodeState::Up), 2);
    }

    #[tokio::test]
    async fn heartbeats_from_two_nodes_land_in_one_store() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("deskside.db");
        let (a, b) = (Store::open(&path)?, Store::open(&path)?);
        let cancel = CancellationToken::new();
        let agents = Gauge::default();
        agents.set(7);
        let interval = Duration::from_secs(5);
        let ta = spawn_heartbeat(
            a.clone(),
            "ctl-a".into(),
            "a:1".into(),
            agents,
            interval,
            cancel.clone(),
        );
        let tb = spawn_heartbeat(
            b,
            "ctl-b".into(),
            "b:1".into(),
            Gauge::default(),
            interval,
            cancel.clone(),
        );
        let mut view = ClusterView::read(&a, "ctl-a", interval).await?;
        while view.nodes.len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            view = ClusterView::read(&a, "ctl-a", interval).await?;
        }
        cancel.cancel();
        let _ = (ta.await, tb.await);
        assert_eq!(view.count(NodeState::Up), 2);
        assert_eq!(view.nodes.first().map(|n| n.agents_online), Some(7));
        Ok(())
    }
}
