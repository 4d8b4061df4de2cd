//! The controller server: one QUIC endpoint, one task per connection.
//!
//! Every connection opens with the version hello (`hello.rs`). What follows depends on the client
//! certificate: none → enrollment only (`enroll.rs`); an agent's → it registers and
//! waits for requests (`agents.rs`); a technician's → request streams handed to the
//! service layer (`technician.rs`).

mod admission;
mod agents;
mod enroll;
mod hello;
mod start_error;
mod technician;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deskside_proto::close;
use deskside_transport::{pki, tls};
use quinn::{Connection, Endpoint, Incoming};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

pub use admission::{GRACE as PENDING_GRACE, MAX_PENDING_PER_ADDRESS};
pub use agents::Registry;
pub use start_error::StartError;

use crate::datadir::DataDir;
use crate::evidence::DirBlobs;
use crate::service::{JoinThrottle, Seen, Shared};

/// Most connections held at once. 20,000 agents plus technicians is the design target;
/// past this new connections are refused rather than starving existing ones.
pub const MAX_CONNECTIONS: usize = 25_000;
/// A client that connects but does not say hello within this is dropped (default of
/// [`Options::hello_timeout`]).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection without a known identity must have finished its handshake, its hello and
/// its enrollment within this of arriving, or it is closed (default of
/// [`Options::unidentified_deadline`]). An honest client needs a few round trips and one
/// certificate signing; 30 s covers a slow mobile link and a busy controller, and bounds
/// how long an idle anonymous connection holds a place among its address's
/// [`MAX_PENDING_PER_ADDRESS`].
pub const UNIDENTIFIED_DEADLINE: Duration = Duration::from_secs(30);
/// A request frame must arrive whole within this after its stream opens (default of
/// [`Options::request_timeout`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often revoked identities' live connections are looked for and closed.
pub const REVOCATION_SWEEP: Duration = Duration::from_secs(2);
/// How often the outbox looks for syncs that are due (on the node holding its lease).
pub const OUTBOX_POLL: Duration = Duration::from_secs(5);
/// How often the node holding the housekeeping lease forgets expired support codes.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
/// On shutdown, in-flight requests get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the connection tasks share: the operations' state, and what only the server
/// needs (the live connections, the handshake limits).
#[derive(Debug)]
pub(crate) struct Node {
    pub shared: Arc<Shared>,
    /// The live connections; also the service's way to the agents.
    pub registry: Arc<Registry>,
    /// This node's name when it is one of several: its agents' connections are then
    /// recorded in the location table, for the other nodes to route to.
    pub located: Option<String>,
    /// How long a new connection may take to say hello.
    pub hello_timeout: Duration,
    /// How long a connection may stay unidentified, enrollment included.
    pub unidentified_deadline: Duration,
}

impl std::ops::Deref for Node {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// A running controller.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` and `/health` are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the web console is served, when enabled.
    pub console_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Asks the server to drain and stop.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Waits until the server has stopped (after [`Running::shutdown`]).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// 48 bits of the CA digest: enough to tell installations sharing one RT apart, short
/// enough for a ticket subject.
const ORIGIN_HEX_CHARS: usize = 12;

/// Loads the data directory and starts serving on `listen` (no metrics endpoint).
pub async fn start(data: &DataDir, listen: SocketAddr) -> Result<Running, StartError> {
    start_with(
        data,
        &Options {
            listen,
            ..Options::default()
        },
    )
    .await
}

/// What a controller needs beyond its data directory, from the config file and flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Serve `/metrics` and `/health` here; `None` for no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    pub sla: crate::sla::SlaConfig,
    pub ticketing: crate::adapters::config::TicketingConfig,
    /// A connection that says no hello within this is closed ([`HELLO_TIMEOUT`]).
    pub hello_timeout: Duration,
    /// A connection that has not identified itself or finished enrolling within this of
    /// arriving is closed ([`UNIDENTIFIED_DEADLINE`]).
    pub unidentified_deadline: Duration,
    /// A request stream whose frame is not whole within this gets an error reply and is
    /// dropped ([`REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
    /// How long agent and technician certificates are valid (`[certificates] validity`).
    pub client_validity: Duration,
    /// Largest file `deskside collect` stores (`[evidence] max_file_bytes`); the agent
    /// refuses larger ones before sending a byte.
    pub max_collect_bytes: u64,
    /// Where evidence blobs live (`[evidence] dir`, shared by a cluster's nodes);
    /// `None` for `<data>/evidence`.
    pub evidence_dir: Option<std::path::PathBuf>,
    /// Serve the web console (`[console]`); `None` for none.
    pub console: Option<crate::console::ConsoleConfig>,
    /// This node's name and the cluster's addresses (`[cluster]`); with `nats` set,
    /// requests for agents on other nodes are routed there.
    pub cluster: crate::cluster::ClusterConfig,
    /// How often this node writes its heartbeat ([`crate::cluster::HEARTBEAT_INTERVAL`]).
    pub heartbeat: Duration,
}

impl Default for Options {
    /// Loopback, an ephemeral port, no metrics endpoint, default SLA, no ticketing, the
    /// default timeouts.
    fn default() -> Self {
        Options {
            listen: SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
            metrics_listen: None,
            sla: crate::sla::SlaConfig::default(),
            ticketing: crate::adapters::config::TicketingConfig::default(),
            hello_timeout: HELLO_TIMEOUT,
            unidentified_deadline: UNIDENTIFIED_DEADLINE,
            client_validity: crate::ca::CLIENT_VALIDITY,
            request_timeout: REQUEST_TIMEOUT,
            max_collect_bytes: deskside_proto::limits::MAX_COLLECT_BYTES,
            evidence_dir: None,
            console: None,
            cluster: crate::cluster::ClusterConfig::default(),
            heartbeat: crate::cluster::HEARTBEAT_INTERVAL,
        }
    }
}

/// [`start`], also serving `/metrics` and `/health` on `metrics_listen`.
pub async fn start_with(data: &DataDir, options: &Options) -> Result<Running, StartError> {
    let (listen, metrics_listen) = (options.listen, options.metrics_listen);
    let keys = data.load()?;
    let record_signing = data.record_signing(&keys.ca)?;
    let store = data.open_store().map_err(|source| StartError::Database {
        at: data.store_at(),
        source,
    })?;
    let ca_der = pki::cert_from_pem(&keys.ca.cert_pem)?;
    // Names this controller in what it writes to an external ticket system: its CA's
    // digest, stable across restarts and distinct between installations.
    let origin: String = hex::encode(pki::fingerprint(&ca_der))
        .chars()
        .take(ORIGIN_HEX_CHARS)
        .collect();
    let server_der = pki::cert_from_pem(&keys.server_cert_pem)?;
    let server_key = pki::key_from_pem(&keys.server_key_pem)?;
    let config = tls::server_config(ca_der.clone(), vec![server_der, ca_der], server_key)?;
    let endpoint = deskside_transport::endpoint::server_endpoint(
        listen,
        keys.server_key_pem.as_bytes(),
        config,
    )
    .map_err(|source| StartError::Listen { listen, source })?;
    let addr = endpoint.local_addr()?;
    let registry = Arc::new(Registry::new(store.clone()));
    let node_name = options.cluster.node_name();
    let cancel = CancellationToken::new();
    // With NATS, the operations reach the whole cluster's agents; without, this node's.
    let (agents, located): (Arc<dyn crate::service::AgentLink>, _) = match &options.cluster.nats {
        Some(url) => {
            let routing = crate::route::Routing {
                url,
                node: &node_name,
                installation: &origin,
                local: registry.clone(),
                store: store.clone(),
            };
            let router = crate::route::Router::start(routing, cancel.clone()).await?;
            (router, Some(node_name.clone()))
        }
        None => (registry.clone(), None),
    };
    let shared = Arc::new(Shared {
        seen: Seen::start(store.clone()),
        store,
        blobs: Arc::new(DirBlobs::new(
            options
                .evidence_dir
                .clone()
                .unwrap_or_else(|| data.evidence()),
        )),
        ca: keys.ca,
        script_public_key: keys.script_key.verifying_key().to_bytes(),
        request_keys: crate::request_key::RequestKeys::derive(&keys.script_key),
        records: crate::records::RecordSigner::new(record_signing),
        agents,
        sla: options.sla.clone(),
        bundles: data.root().join("bundles"),
        ticketing: crate::adapters::from_config(&options.ticketing, &origin),
        metrics: Arc::new(crate::metrics::Metrics::default()),
        client_validity: options.client_validity,
        request_timeout: options.request_timeout,
        max_collect_bytes: options.max_collect_bytes,
        join_throttle: JoinThrottle::default(),
        events: crate::service::Events::default(),
    });
    let node = Arc::new(Node {
        shared: shared.clone(),
        registry,
        located,
        hello_timeout: options.hello_timeout,
        unidentified_deadline: options.unidentified_deadline,
    });
    let warnings: Arc<[String]> = options.ticketing.warnings().into();
    for w in warnings.iter() {
        tracing::warn!("{w}");
    }
    crate::cluster::spawn_heartbeat(
        shared.store.clone(),
        node_name.clone(),
        crate::cluster::advertised(addr),
        shared.metrics.agents_connected.clone(),
        options.heartbeat,
        cancel.clone(),
    );
    if let Some(system) = shared.ticketing.clone() {
        crate::outbox::spawn_worker(
            shared.store.clone(),
            system,
            cancel.clone(),
            OUTBOX_POLL,
            node_name.clone(),
        );
    }
    spawn_housekeeping(shared.store.clone(), node_name.clone(), cancel.clone());
    let metrics_addr = match metrics_listen {
        Some(at) => Some(
            crate::metrics::serve(
                at,
                shared.store.clone(),
                shared.metrics.clone(),
                warnings.clone(),
                crate::metrics::NodeInfo {
                    name: node_name.clone(),
                    heartbeat: options.heartbeat,
                },
                cancel.clone(),
            )
            .await
            .map_err(|source| StartError::Metrics { at, source })?,
        ),
        None => None,
    };
    let console_addr = match &options.console {
        Some(console) => Some(
            crate::console::start(
                console,
                shared.clone(),
                data.clone(),
                addr,
                &options.cluster.controllers,
                cancel.clone(),
            )
            .await?,
        ),
        None => None,
    };
    tokio::spawn(revocation_sweep(node.clone(), cancel.clone()));
    let task = tokio::spawn(accept_loop(endpoint, node, cancel.clone()));
    info!(%addr, node = %node_name, ?metrics_addr, ?console_addr, store = %data.store_at(), "controller listening");
    Ok(Running {
        addr,
        metrics_addr,
        console_addr,
        cancel,
        task,
    })
}

async fn accept_loop(endpoint: Endpoint, shared: Arc<Node>, cancel: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let pending = admission::Pending::new(MAX_PENDING_PER_ADDRESS);
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => break,
            },
        };
        let remote = incoming.remote_address();
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(%remote, "connection limit reached; refusing");
            shared.metrics.refused("max_connections");
            incoming.refuse();
            continue;
        };
        let (slot, displaced) = match pending.admit(remote.ip(), std::time::Instant::now()) {
            Ok(admitted) => admitted,
            Err(over) => {
                if over.first_in_burst {
                    warn!(
                        %remote,
                        limit = MAX_PENDING_PER_ADDRESS,
                        "too many connections from this address are identifying themselves at once; refusing new ones for now"
                    );
                }
                shared.metrics.refused("pending_per_address");
                incoming.refuse();
                continue;
            }
        };
        if displaced.is_some_and(|d| d.first_in_burst) {
            warn!(
                %remote,
                limit = MAX_PENDING_PER_ADDRESS,
                "too many unidentified connections from this address; the oldest give way to new ones"
            );
        }
        let shared = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            handle(shared, incoming, slot, cancel).await;
            drop(permit);
        });
    }
    tracker.close();
    info!("draining connections");
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("grace period over; closing remaining connections");
    }
    endpoint.close(close::SHUTDOWN.into(), b"controller shutting down");
    endpoint.wait_idle().await;
    shared.seen.flush().await;
    info!("controller stopped");
}

/// Work one node of the cluster does for all: forgetting expired support codes.
fn spawn_housekeeping(store: crate::store::Store, node: String, cancel: CancellationToken) {
    let pass_store = store.clone();
    crate::cluster::spawn_leased(
        store,
        crate::cluster::Work::Housekeeping,
        node,
        HOUSEKEEPING_EVERY,
        cancel,
        move || {
            let store = pass_store.clone();
            async move {
                let now = crate::clock::now_secs();
                match store.run(move |db| db.forget_expired_codes(now)).await {
                    Ok(n) if n > 0 => debug!(forgotten = n, "expired support codes"),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "forgetting expired support codes failed"),
                }
            }
        },
    );
}

/// Closes revoked agents' and technicians' connections promptly (each node its own: the
/// revocations are read from the shared store, wherever they were made); new connections and
/// requests are checked against the store anyway.
async fn revocation_sweep(shared: Arc<Node>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(REVOCATION_SWEEP) => {}
        }
        match shared.store.run(|db| db.revoked()).await {
            Ok((agents, techs)) => {
                let closed = shared.registry.close_revoked(&agents, &techs);
                if closed > 0 {
                    info!(closed, "closed revoked connections");
                }
            }
            Err(e) => warn!(error = %e, "revocation sweep failed"),
        }
    }
}

/// Closes `conn` with a code and a reason the peer will show its user.
pub(crate) fn refuse(conn: &Connection, code: u32, reason: &str) {
    debug!(remote = %conn.remote_address(), code, reason, "closing connection");
    conn.close(code.into(), reason.as_bytes());
}

/// Why an unidentified connection was cut short: a closed set, also the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutShort {
    /// A newer connection from the same address took its place.
    Displaced,
    /// It did not identify itself or finish enrolling within the deadline.
    Deadline,
}

impl CutShort {
    fn label(self) -> &'static str {
        match self {
            CutShort::Displaced => "displaced",
            CutShort::Deadline => "deadline",
        }
    }

    /// Closes `conn` saying why, in words its user can act on, and counts it.
    fn close(self, shared: &Node, conn: &Connection) {
        shared.metrics.cut_short(self.label());
        let reason = match self {
            CutShort::Displaced => format!(
                "too many connections from your network address ({MAX_PENDING_PER_ADDRESS}) had not yet identified themselves or finished enrolling; this one, the oldest, gave way to a newer one. Connect again; if this repeats, another machine behind the same address is holding connections open"
            ),
            CutShort::Deadline => format!(
                "did not identify itself or finish enrolling within {} s of connecting; connect again",
                shared.unidentified_deadline.as_secs()
            ),
        };
        let code = match self {
            CutShort::Displaced => close::BUSY,
            CutShort::Deadline => close::TIMED_OUT,
        };
        refuse(conn, code, &reason);
    }
}

/// Runs `phase` of an unidentified connection unless a newer connection from the same
/// address displaces it or the deadline passes first.
async fn unidentified<T>(
    slot: &admission::PendingSlot,
    deadline: tokio::time::Instant,
    phase: impl std::future::Future<Output = T>,
) -> Result<T, CutShort> {
    tokio::select! {
        out = phase => Ok(out),
        _ = slot.displaced() => Err(CutShort::Displaced),
        _ = tokio::time::sleep_until(deadline) => Err(CutShort::Deadline),
    }
}

/// One connection. `slot` holds its place among its address's unidentified connections
/// until it identifies as an agent or technician (an enrolling client keeps it); until
/// then a newer connection from the same address may displace it, and it must be done
/// within [`Node::unidentified_deadline`].
async fn handle(
    shared: Arc<Node>,
    incoming: Incoming,
    slot: admission::PendingSlot,
    cancel: CancellationToken,
) {
    let remote = incoming.remote_address();
    let deadline = tokio::time::Instant::now() + shared.unidentified_deadline;
    // A handshake cut short is dropped: quinn closes it without a reason, since no
    // encrypted channel exists yet to carry one.
    let conn = match unidentified(&slot, deadline, incoming.into_future()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            debug!(%remote, error = %e, "handshake failed");
            return;
        }
        Err(cut) => {
            debug!(%remote, why = cut.label(), "handshake cut short");
            shared.metrics.cut_short(cut.label());
            return;
        }
    };
    let (peer, send, recv) = match unidentified(&slot, deadline, hello::greet(&shared, &conn)).await
    {
        Ok(Some(greeted)) => greeted,
        Ok(None) => return,
        Err(cut) => return cut.close(&shared, &conn),
    };
    match peer {
        hello::Peer::Anonymous => {
            if let Err(cut) = unidentified(&slot, deadline, enroll::serve(&shared, &conn)).await {
                cut.close(&shared, &conn);
            }
            drop(slot);
        }
        hello::Peer::Agent { id } => {
            drop(slot);
            agents::serve(&shared, &conn, send, recv, &id, &cancel).await;
        }
        hello::Peer::Technician { name, tier } => {
            drop((slot, send, recv));
            let registry = shared.registry.clone();
            technician::serve(&shared.shared, &registry, &conn, &name, tier, &cancel).await;
        }
    }
}
