//! `[cluster]`: this node's name among several controllers, and how nodes reach each
//! other (NATS) to route a request for an agent connected to another node.

use deskside_config::FileKeys;

use super::ConfigError;

const CLUSTER_KEYS: &str = "expected node, nats";
/// A node name is a label in logs, metrics and the location table, not a document.
pub const MAX_NODE_NAME_BYTES: usize = 64;

/// `[cluster]`, validated. Absent: a single node, no routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster; `None`: the host name.
    pub node: Option<String>,
    /// The NATS server nodes route requests through (`nats://host:port`, with
    /// `user:password@` or a token if the server wants one); `None`: a single node.
    pub nats: Option<String>,
}

impl ClusterConfig {
    /// This node's name: `[cluster] node`, else the host name, else `"deskside"`.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(|| {
            let host = crate::host::hostname();
            if valid_node(&host) {
                host
            } else {
                "deskside".to_owned()
            }
        })
    }
}

/// A node name: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn valid_node(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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

/// Parses the `[cluster]` table.
pub(super) fn parse(f: &FileKeys<'_>, table: &toml::Table) -> Result<ClusterConfig, ConfigError> {
    let mut cluster = ClusterConfig::default();
    for (k, v) in table {
        match k.as_str() {
            "node" => {
                let name = f.string("cluster.node", v)?;
                if !valid_node(name) {
                    return Err(f
                        .invalid(
                            "cluster.node",
                            v,
                            format!(
                                "must be 1 to {MAX_NODE_NAME_BYTES} letters, digits, '-', '_' or '.'"
                            ),
                        )
                        .into());
                }
                cluster.node = Some(name.to_owned());
            }
            "nats" => {
                let url = f.string("cluster.nats", v)?;
                if !valid_nats_url(url) {
                    return Err(f
                        .invalid(
                            "cluster.nats",
                            v,
                            "must be a NATS server address, e.g. nats://127.0.0.1:4222",
                        )
                        .into());
                }
                cluster.nats = Some(url.to_owned());
            }
            other => {
                return Err(f.unknown(&format!("cluster.{other}"), CLUSTER_KEYS).into());
            }
        }
    }
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_nats_addresses_are_checked() {
        assert!(valid_node("ctl-a") && valid_node("ctl-a.example.org"));
        assert!(!valid_node("") && !valid_node("ctl a") && !valid_node("ctl>*"));
        assert!(!valid_node(&"x".repeat(MAX_NODE_NAME_BYTES + 1)));
        assert!(valid_nats_url("nats://127.0.0.1:4222"));
        assert!(valid_nats_url("nats://u:p@a:4222, nats://b:4222"));
        assert!(!valid_nats_url("tls://b:4222"));
        assert!(valid_nats_url("127.0.0.1:4222"));
        assert!(!valid_nats_url("") && !valid_nats_url("nats://") && !valid_nats_url("http://x/y"));
    }
}
