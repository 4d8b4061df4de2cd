//! Prometheus metrics and the health endpoint, served on their own listen address
//! (loopback by default), apart from the QUIC port agents and technicians use.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The request kind, e.g. `diagnostics`, `run_script`.
    pub kind: String,
    /// `ok` or the error code, e.g. `agent_refused`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `up` or `down` ([`crate::cluster::NodeState`]).
    pub state: String,
}

/// Which node this endpoint speaks for, and how its cluster's heartbeats are read.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// The heartbeat interval: a node silent for three is down.
    pub heartbeat: Duration,
}

/// Every metric the controller exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub agents_connected: Gauge,
    /// Technician connections open now (a command-line call is one while it runs).
    pub technicians_connected: Gauge,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<KindLabel, Histogram>,
    pub evidence_bytes: Counter<u64, AtomicU64>,
    pub outbox_depth: Gauge,
    /// Connections refused before their handshake, by reason (`max_connections`,
    /// `pending_per_address`).
    pub connections_refused: Family<ReasonLabel, Counter>,
    /// Unidentified connections closed before they identified themselves or finished
    /// enrolling, by reason (`displaced` by a newer one from the same address,
    /// `deadline`).
    pub unidentified_cut_short: Family<ReasonLabel, Counter>,
    /// Joins by support code turned down, by reason (`wrong_code`; held without a
    /// look-up: `backoff`, `locked_out`, `paused`).
    pub support_code_refusals: Family<ReasonLabel, Counter>,
    /// Technicians locked out of joining by code after too many wrong codes.
    pub support_code_lockouts: Counter,
    /// Items from an agent's spool refused for good, by reason (`request_key`).
    pub deliveries_refused: Family<ReasonLabel, Counter>,
    /// 1, labelled with this node's name.
    pub node_info: Family<NodeLabel, Gauge>,
    /// The cluster's nodes by state (`up`, `down`), from their heartbeats.
    pub cluster_nodes: Family<StateLabel, Gauge>,
    /// Agents online at each node of the cluster, as its last heartbeat said.
    pub cluster_node_agents: Family<NodeLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("deskside");
        let agents_connected = Gauge::default();
        let technicians_connected = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // 1 ms … ~16 s: a script round trip to a diagnostics pull on a slow link.
        let request_seconds = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let evidence_bytes = Counter::<u64, AtomicU64>::default();
        let outbox_depth = Gauge::default();
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        let unidentified_cut_short = Family::<ReasonLabel, Counter>::default();
        let support_code_refusals = Family::<ReasonLabel, Counter>::default();
        let support_code_lockouts = Counter::default();
        let deliveries_refused = Family::<ReasonLabel, Counter>::default();
        let node_info = Family::<NodeLabel, Gauge>::default();
        let cluster_nodes = Family::<StateLabel, Gauge>::default();
        let cluster_node_agents = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "node_info",
            "This controller node, by name",
            node_info.clone(),
        );
        registry.register(
            "cluster_nodes",
            "The cluster's controller nodes by state (up, down), from their heartbeats",
            cluster_nodes.clone(),
        );
        registry.register(
            "cluster_node_agents",
            "Agents online at each node, as its last heartbeat said",
            cluster_node_agents.clone(),
        );
        registry.register(
            "agents_connected",
            "Agents connected now",
            agents_connected.clone(),
        );
        registry.register(
            "technicians_connected",
            "Technician connections open now",
            technicians_connected.clone(),
        );
        registry.register(
            "requests",
            "Technician requests by kind and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Technician request latency by kind",
            request_seconds.clone(),
        );
        registry.register(
            "evidence_bytes",
            "Evidence bytes stored",
            evidence_bytes.clone(),
        );
        registry.register(
            "outbox_depth",
            "Syncs to the external ticket system still pending",
            outbox_depth.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused before their handshake, by reason",
            connections_refused.clone(),
        );
        registry.register(
            "unidentified_connections_cut_short",
            "Connections closed before they identified themselves or finished enrolling, by reason",
            unidentified_cut_short.clone(),
        );
        registry.register(
            "support_code_refusals",
            "Joins by support code turned down, by reason",
            support_code_refusals.clone(),
        );
        registry.register(
            "support_code_lockouts",
            "Technicians locked out of joining by code after too many wrong codes",
            support_code_lockouts.clone(),
        );
        registry.register(
            "deliveries_refused",
            "Items from agents' spools refused for good, by reason",
            deliveries_refused.clone(),
        );
        Metrics {
            registry,
            agents_connected,
            technicians_connected,
            requests,
            request_seconds,
            evidence_bytes,
            outbox_depth,
            connections_refused,
            unidentified_cut_short,
            support_code_refusals,
            support_code_lockouts,
            deliveries_refused,
            node_info,
            cluster_nodes,
            cluster_node_agents,
        }
    }
}

impl Metrics {
    pub fn observe(&self, kind: &str, outcome: &str, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.request_seconds
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a connection refused before its handshake.
    pub fn refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts an unidentified connection closed early (`displaced`, `deadline`).
    pub fn cut_short(&self, reason: &str) {
        self.unidentified_cut_short
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a join by support code turned down (`wrong_code`, `backoff`, …).
    pub fn support_code_refused(&self, reason: &str) {
        self.support_code_refusals
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Sets the node and cluster gauges from `view`.
    pub fn show_cluster(&self, view: &crate::cluster::ClusterView) {
        use crate::cluster::NodeState;
        self.node_info.clear();
        self.node_info
            .get_or_create(&NodeLabel {
                node: view.node.clone(),
            })
            .set(1);
        for state in [NodeState::Up, NodeState::Down] {
            self.cluster_nodes
                .get_or_create(&StateLabel {
                    state: state.label().to_owned(),
                })
                .set(i64::try_from(view.count(state)).unwrap_or(i64::MAX));
        }
        self.cluster_node_agents.clear();
        for n in &view.nodes {
            self.cluster_node_agents
                .get_or_create(&NodeLabel {
                    node: n.name.clone(),
                })
                .set(i64::try_from(n.agents_online).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What the health endpoint and `deskside status` report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub agents_connected: i64,
    /// Absent from controllers older than the field.
    #[serde(default)]
    pub technicians_connected: i64,
    pub outbox_depth: i64,
    pub database: String,
    /// Config the operator chose that weakens security (e.g. ticketing over plain HTTP).
    /// Absent from controllers older than the field.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// This node's name. Absent from controllers older than the field.
    #[serde(default)]
    pub node: String,
    /// The cluster's nodes (this one included) from their heartbeats. Absent from
    /// controllers older than the field.
    #[serde(default)]
    pub cluster: Vec<crate::cluster::NodeStatus>,
}

async fn health(store: &Store, metrics: &Metrics, warnings: &[String], node: &NodeInfo) -> Health {
    let cluster = match crate::cluster::ClusterView::read(store, &node.name, node.heartbeat).await {
        Ok(view) => {
            metrics.show_cluster(&view);
            view.nodes
        }
        Err(e) => {
            debug!(error = %e, "cluster view not read");
            Vec::new()
        }
    };
    let db = store.run(|db| db.outbox_pending()).await;
    let (database, depth) = match db {
        Ok(n) => ("ok".to_owned(), i64::try_from(n).unwrap_or(i64::MAX)),
        Err(e) => (format!("error: {e}"), -1),
    };
    metrics.outbox_depth.set(depth.max(0));
    Health {
        status: if database == "ok" {
            "ok".into()
        } else {
            "degraded".into()
        },
        version: env!("CARGO_PKG_VERSION").into(),
        agents_connected: metrics.agents_connected.get(),
        technicians_connected: metrics.technicians_connected.get(),
        outbox_depth: depth,
        database,
        warnings: warnings.to_vec(),
        node: node.name.clone(),
        cluster,
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn route(
    req: Request<Incoming>,
    store: Store,
    metrics: Arc<Metrics>,
    warnings: Arc<[String]>,
    node: Arc<NodeInfo>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            health(&store, &metrics, &warnings, &node).await;
            reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics.render(),
            )
        }
        (&Method::GET, "/health") => {
            let h = health(&store, &metrics, &warnings, &node).await;
            let status = if h.status == "ok" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(
                status,
                "application/json",
                serde_json::to_string(&h).unwrap_or_default(),
            )
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics or /health\n".into(),
        ),
    })
}

/// Binds `addr` and serves `/metrics` and `/health` until `cancel`; `/health` repeats
/// `warnings` (see [`Health::warnings`]).
pub async fn serve(
    addr: SocketAddr,
    store: Store,
    metrics: Arc<Metrics>,
    warnings: Arc<[String]>,
    node: NodeInfo,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let node = Arc::new(node);
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                s = listener.accept() => match s {
                    Ok((s, _)) => s,
                    Err(e) => {
                        warn!(error = %e, "metrics accept failed");
                        continue;
                    }
                },
            };
            let (store, metrics, warnings, node) = (
                store.clone(),
                metrics.clone(),
                warnings.clone(),
                node.clone(),
            );
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    route(
                        req,
                        store.clone(),
                        metrics.clone(),
                        warnings.clone(),
                        node.clone(),
                    )
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    debug!(error = %e, "metrics connection");
                }
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_metrics_it_counts() {
        let m = Metrics::default();
        m.agents_connected.set(3);
        m.technicians_connected.set(2);
        m.observe("diagnostics", "ok", Duration::from_millis(120));
        m.evidence_bytes.inc_by(42);
        let text = m.render();
        assert!(text.contains("deskside_agents_connected 3"), "{text}");
        assert!(text.contains("deskside_technicians_connected 2"), "{text}");
        assert!(
            text.contains("deskside_requests_total{kind=\"diagnostics\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("deskside_evidence_bytes_total 42"), "{text}");
        assert!(
            text.contains("deskside_request_duration_seconds_bucket"),
            "{text}"
        );
    }

    #[test]
    fn renders_the_node_and_its_cluster() {
        use crate::cluster::ClusterView;
        use crate::store::NodeRow;
        let row = |name: &str, at: u64, agents: u64| NodeRow {
            name: name.into(),
            address: format!("{name}:4433"),
            started_at: 1,
            heartbeat_at: at,
            agents_online: agents,
            version: "0.1.0".into(),
        };
        let m = Metrics::default();
        let view = ClusterView::from_rows(
            "ctl-a",
            vec![
                row("ctl-a", 100, 4),
                row("ctl-b", 99, 6),
                row("ctl-c", 20, 0),
            ],
            100,
            Duration::from_secs(5),
        );
        m.show_cluster(&view);
        let text = m.render();
        for line in [
            "deskside_node_info{node=\"ctl-a\"} 1",
            "deskside_cluster_nodes{state=\"up\"} 2",
            "deskside_cluster_nodes{state=\"down\"} 1",
            "deskside_cluster_node_agents{node=\"ctl-b\"} 6",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        // One node: the cluster is that node, up.
        m.show_cluster(&ClusterView::from_rows(
            "solo",
            vec![row("solo", 100, 1)],
            100,
            Duration::from_secs(5),
        ));
        let text = m.render();
        assert!(!text.contains("ctl-b"), "{text}");
        assert!(
            text.contains("deskside_cluster_nodes{state=\"up\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("deskside_cluster_nodes{state=\"down\"} 0"),
            "{text}"
        );
    }
}
