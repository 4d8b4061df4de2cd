//! Several controller nodes sharing one store: each node's name and heartbeat
//! (`heartbeat.rs`), the work only one node at a time may do, under a lease (`lease.rs`),
//! and `[cluster]` in `controller.toml` (this file).

mod heartbeat;
mod lease;

use std::time::Duration;

use deskside_config::FileKeys;
use deskside_proto::msg::enroll::check_controllers;

pub use heartbeat::{ClusterView, NodeStatus, spawn_heartbeat};
pub use lease::{LEASE_TTL, Work, lease_ttl, spawn_leased};

/// How often each node writes its heartbeat row.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// A node not heard from for this many intervals is shown as down.
pub const MISSED_BEATS_DOWN: u32 = 3;
/// Longest node name: it shows in metrics labels and status lines.
pub const MAX_NODE_NAME: usize = 64;

const CLUSTER_KEYS: &str = "expected node, controllers, nats";

/// `[cluster]`: this node's name and what new enrollment tokens carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster; `None`: the host name.
    pub node: Option<String>,
    /// The `HOST:PORT` of every node as agents and technicians reach it; new tokens
    /// carry this list. Empty: tokens name the address given on the command line.
    pub controllers: Vec<String>,
    /// The NATS server the nodes route requests to each other's agents through
    /// (`nats://host:port`, with `user:password@` if it asks for them); `None`: no
    /// routing, each node reaches only its own agents.
    pub nats: Option<String>,
}

impl ClusterConfig {
    /// Parses the `[cluster]` table.
    pub fn from_table(
        f: &FileKeys<'_>,
        table: &toml::Table,
    ) -> Result<ClusterConfig, deskside_config::ConfigError> {
        let mut config = ClusterConfig::default();
        for (key, value) in table {
            match key.as_str() {
                "node" => {
                    let name = f.string("cluster.node", value)?;
                    if !valid_node_name(name) {
                        return Err(f.invalid(
                            "cluster.node",
                            value,
                            format!("must be 1-{MAX_NODE_NAME} letters, digits, '.', '_' or '-'"),
                        ));
                    }
                    config.node = Some(name.to_owned());
                }
                "controllers" => {
                    let list = value
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|v| v.as_str().map(str::to_owned))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| {
                            f.invalid(
                                "cluster.controllers",
                                value,
                                "must be a list of \"HOST:PORT\" strings",
                            )
                        })?;
                    config.controllers = check_controllers(&list)
                        .map_err(|e| f.invalid("cluster.controllers", value, e.to_string()))?;
                }
                "nats" => {
                    let url = f.string("cluster.nats", value)?;
                    if !valid_nats_url(url) {
                        return Err(f.invalid(
                            "cluster.nats",
                            value,
                            "must be a NATS server address, e.g. nats://127.0.0.1:4222",
                        ));
                    }
                    config.nats = Some(url.to_owned());
                }
                other => return Err(f.unknown(&format!("cluster.{other}"), CLUSTER_KEYS)),
            }
        }
        Ok(config)
    }

    /// This node's name: `node`, else the host name (cut to [`MAX_NODE_NAME`]).
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            let host = crate::host::hostname();
            let name: String = host.chars().take(MAX_NODE_NAME).collect();
            if valid_node_name(&name) {
                name
            } else {
                "controller".to_owned()
            }
        })
    }
}

/// The address a node reports in its heartbeat: the one it listens on, or this host's
/// name on its port when it listens on every address (0.0.0.0 says nothing to a reader).
pub fn advertised(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        format!("{}:{}", crate::host::hostname(), listen.port())
    } else {
        listen.to_string()
    }
}

/// Whether `url` names a NATS server the client can dial: `nats://host:port` or a bare
/// `host:port`, one or more separated by commas. (TLS to NATS is not offered yet: keep
/// it on the nodes' private network, with credentials.)
pub fn valid_nats_url(url: &str) -> bool {
    !url.is_empty()
        && url.split(',').all(|one| {
            let one = one.trim();
            let rest = one.strip_prefix("nats://").unwrap_or(one);
            !rest.is_empty()
                && !rest.contains(char::is_whitespace)
                && !rest.contains('/')
                && !rest.contains("://")
        })
}

/// Whether `name` can name a node: 1-64 ASCII letters, digits, `.`, `_` or `-`.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether a node is up or down, by its last heartbeat: a closed set, also the
/// `state` label of `deskside_cluster_nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Up,
    Down,
}

impl NodeState {
    /// Up when its last heartbeat is less than [`MISSED_BEATS_DOWN`] intervals old.
    pub fn of(heartbeat_at: u64, now: u64, interval: Duration) -> NodeState {
        let window = interval.saturating_mul(MISSED_BEATS_DOWN).as_secs().max(1);
        if now.saturating_sub(heartbeat_at) < window {
            NodeState::Up
        } else {
            NodeState::Down
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, deskside_config::ConfigError> {
        let f = FileKeys {
            path: Path::new("/etc/deskside/controller.toml"),
        };
        let doc: toml::Table = toml::from_str(text).map_err(|e| {
            f.invalid(
                "cluster",
                &toml::Value::String(String::new()),
                e.to_string(),
            )
        })?;
        ClusterConfig::from_table(&f, &doc)
    }

    #[test]
    fn cluster_keys_parse_and_bad_ones_name_the_key() -> anyhow::Result<()> {
        let c = parse(
            "node = \"ctl-a\"\ncontrollers = [\"ctl-a.example:4433\", \"ctl-b.example:4433\"]",
        )?;
        assert_eq!(c.node.as_deref(), Some("ctl-a"));
        assert_eq!(c.node_name(), "ctl-a");
        assert_eq!(c.controllers.len(), 2);
        for (bad, key) in [
            ("node = \"\"", "cluster.node"),
            ("node = \"a b\"", "cluster.node"),
            ("controllers = \"a:1\"", "cluster.controllers"),
            ("controllers = []", "cluster.controllers"),
            ("controllers = [\"a\"]", "cluster.controllers"),
            ("nodes = 1", "cluster.nodes"),
            ("nats = \"http://nats/\"", "cluster.nats"),
            ("nats = 4222", "cluster.nats"),
        ] {
            let e = parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(key), "{bad}: {e}");
        }
        Ok(())
    }

    #[test]
    fn nats_addresses_are_checked() -> anyhow::Result<()> {
        assert_eq!(
            parse("nats = \"nats://127.0.0.1:4222\"")?.nats.as_deref(),
            Some("nats://127.0.0.1:4222")
        );
        assert!(valid_nats_url("nats://u:p@a:4222, nats://b:4222"));
        assert!(valid_nats_url("127.0.0.1:4222"));
        for bad in ["", "nats://", "tls://b:4222", "http://x/y", "a b:1"] {
            assert!(!valid_nats_url(bad), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn without_a_name_the_node_is_named_after_the_host() {
        let name = ClusterConfig::default().node_name();
        assert!(valid_node_name(&name), "{name}");
    }

    #[test]
    fn a_node_listening_everywhere_reports_its_host_name() -> anyhow::Result<()> {
        assert_eq!(advertised("192.0.2.7:4433".parse()?), "192.0.2.7:4433");
        let any = advertised("0.0.0.0:4433".parse()?);
        assert_eq!(any, format!("{}:4433", crate::host::hostname()));
        Ok(())
    }

    #[test]
    fn a_node_is_down_after_three_missed_heartbeats() {
        let i = Duration::from_secs(5);
        assert_eq!(NodeState::of(100, 100, i), NodeState::Up);
        assert_eq!(NodeState::of(100, 114, i), NodeState::Up);
        assert_eq!(NodeState::of(100, 115, i), NodeState::Down);
        // A clock slightly behind another node's is not "down".
        assert_eq!(NodeState::of(120, 100, i), NodeState::Up);
    }
}
