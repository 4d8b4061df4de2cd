//! Several controller nodes: a request for an agent connected to another node goes
//! there over NATS and its replies come back the same way — a second implementation
//! of [`AgentLink`], so every operation in `service/` routes without knowing it.
//!
//! Why NATS and not PostgreSQL LISTEN/NOTIFY: a routed request carries a script's output
//! streams and collected files of up to hundreds of MiB. A NOTIFY payload is capped at
//! 8000 bytes and every one goes through the database's single notification queue,
//! shared with the store's own work; NATS (Debian's `nats-server`) does request/reply
//! natively, keeps one publisher's messages in order, and moves hundreds of MiB/s
//! without touching the database. Core NATS drops messages to a slow consumer without a
//! word, so each relay numbers its frames, holds at most [`WINDOW_BYTES`] in flight
//! under credit from the reader, beats every [`BEAT`] and gives up after [`SILENCE`]:
//! a gap, a bad frame or a silent node ends the request with an error, never with
//! silently missing bytes.
//!
//! - `wire.rs`: the frames, bounded decodes.
//! - `numbered.rs`: numbering and checking them, the silence limit.
//! - `relay.rs`: the requesting node's [`AgentStream`].
//! - `serve.rs`: the holding node: pings, stream opens, the pump.
//! - `locations.rs`: which node holds which agent, for `is_online`.

mod locations;
mod numbered;
mod relay;
mod serve;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, RequestErrorKind};
use tokio_util::sync::CancellationToken;
use tracing::info;

use self::locations::Locations;
use self::numbered::{Inbound, Numbered};
use self::relay::RelayedStream;
use self::wire::{MAX_FRAME_BYTES, Open, Opened};
use crate::service::{AgentLink, AgentStream, CallError, Pending};
use crate::store::{Store, StoreResult};
use deskside_transport::TransportError;

/// Bytes of an agent's stream the holding node sends ahead of what the requester has
/// read: enough to keep a LAN busy (4 MiB per millisecond of round trip is 4 GB/s),
/// small enough that a node relaying dozens of collects at once stays far below
/// nats-server's 64 MiB pending limit per connection.
pub const WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// Each end of an idle relay says it is alive this often.
pub const BEAT: Duration = Duration::from_secs(2);
/// A relay whose other end has said nothing for this long is over: the request ends
/// with an error, the agent keeps its unacknowledged evidence and delivers it again.
/// Several beats, so a busy node is not taken for a dead one.
pub const SILENCE: Duration = Duration::from_secs(15);
/// The node said to hold an agent must answer a stream-open request within this.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node may take to answer a liveness ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the other nodes' agents (and whether those nodes answer) are read again
/// for `is_online`.
pub const LOCATION_REFRESH: Duration = Duration::from_secs(2);
/// Most streams one node relays for the others at once; more are refused with a
/// reason, not queued.
pub const MAX_RELAYS: usize = 4096;
/// How long `deskside serve` waits for NATS when starting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why routing could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    #[error("cannot reach NATS at {url}: {reason}; start nats-server there or fix [cluster] nats")]
    Connect { url: String, reason: String },
    #[error(
        "the NATS server at {url} takes messages of at most {max} bytes; a relayed request needs {need}: raise max_payload in its configuration"
    )]
    SmallPayload {
        url: String,
        max: usize,
        need: usize,
    },
    #[error("cannot subscribe to this node's subjects on NATS: {0}")]
    Subscribe(String),
    #[error("clearing this node's old agent locations: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// `url` with any `user:password@` or token taken out, for logs and `config check`.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = one.trim();
            match (one.find("://"), one.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!(
                        "{}://…@{}",
                        one.get(..scheme).unwrap_or(""),
                        one.get(at + 1..).unwrap_or("")
                    )
                }
                (None, Some(at)) => format!("…@{}", one.get(at + 1..).unwrap_or("")),
                _ => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn connect(url: &str, name: &str) -> Result<Client, RouteError> {
    let options = ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT);
    let fail = |reason: String| RouteError::Connect {
        url: redact(url),
        reason,
    };
    let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(url))
        .await
        .map_err(|_| fail(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| fail(e.to_string()))?;
    let max = client.server_info().max_payload;
    if max < MAX_FRAME_BYTES {
        return Err(RouteError::SmallPayload {
            url: redact(url),
            max,
            need: MAX_FRAME_BYTES,
        });
    }
    Ok(client)
}

/// `deskside config check --reach`: connects to NATS and checks its message size.
pub async fn reach(url: &str) -> Result<(), RouteError> {
    connect(url, "deskside config check").await.map(drop)
}

/// The NATS subjects of one installation's nodes: under its CA's digest, so two
/// installations sharing a NATS server never meet; node names hex-encoded, so any
/// name is one subject token.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    prefix: String,
    /// This node's name.
    pub node: String,
}

impl Subjects {
    fn at(&self, node: &str, what: &str) -> String {
        format!("{}.node.{}.{what}", self.prefix, hex::encode(node))
    }

    fn open(&self, node: &str) -> String {
        self.at(node, "open")
    }

    fn ping(&self, node: &str) -> String {
        self.at(node, "ping")
    }
}

/// The agents of the whole cluster: this node's own connections, and the others'
/// through NATS.
pub struct Router {
    local: Arc<dyn AgentLink>,
    client: Client,
    subjects: Subjects,
    store: Store,
    locations: Arc<Locations>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("node", &self.subjects.node)
            .finish_non_exhaustive()
    }
}

/// What routing needs to start.
#[derive(Debug)]
pub struct Routing<'a> {
    /// `[cluster] nats`.
    pub url: &'a str,
    /// This node's name.
    pub node: &'a str,
    /// Names the installation (its CA's digest): the subjects' prefix.
    pub installation: &'a str,
    /// This node's own connections.
    pub local: Arc<dyn AgentLink>,
    pub store: Store,
}

impl Router {
    /// Connects to NATS, forgets where this node's agents were before it started,
    /// serves the other nodes' requests for its agents and keeps the other nodes'
    /// agents in view, until `cancel`.
    pub async fn start(
        r: Routing<'_>,
        cancel: CancellationToken,
    ) -> Result<Arc<Router>, RouteError> {
        let client = connect(r.url, &format!("deskside node {}", r.node)).await?;
        let node = r.node.to_owned();
        let cleared = r
            .store
            .run(move |db| db.clear_node_locations(&node))
            .await?;
        let subjects = Subjects {
            prefix: format!("deskside.{}", r.installation),
            node: r.node.to_owned(),
        };
        serve::serve(
            client.clone(),
            subjects.clone(),
            r.local.clone(),
            cancel.clone(),
        )
        .await
        .map_err(|e| RouteError::Subscribe(e.to_string()))?;
        let locations = Arc::new(Locations::default());
        tokio::spawn(locations::refresh(
            locations.clone(),
            client.clone(),
            subjects.clone(),
            r.store.clone(),
            cancel,
        ));
        info!(node = r.node, nats = %redact(r.url), cleared, "routing requests between nodes");
        Ok(Arc::new(Router {
            local: r.local,
            client,
            subjects,
            store: r.store,
            locations,
        }))
    }

    /// Opens a relayed stream to agent `id` on node `node`.
    async fn relay(&self, id: &str, node: &str) -> Result<Box<dyn AgentStream>, CallError> {
        let transport = |what: String| CallError::Transport {
            agent: id.to_owned(),
            source: TransportError::Stream(what),
        };
        let up = self.client.new_inbox();
        let sub = self
            .client
            .subscribe(up.clone())
            .await
            .map_err(|e| transport(format!("subscribing on NATS: {e}")))?;
        let open = Open {
            agent: id.to_owned(),
            up,
            from: self.subjects.node.clone(),
        };
        let asked = self.client.request(self.subjects.open(node), open.encode());
        let reply = match tokio::time::timeout(OPEN_TIMEOUT, asked).await {
            Err(_) => {
                return Err(CallError::Offline(format!(
                    "{id} (connected to node {node}, which did not answer within {} s)",
                    OPEN_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => {
                return Err(CallError::Offline(format!(
                    "{id} (last connected to node {node}, which is not running)"
                )));
            }
            Ok(Err(e)) if e.kind() == RequestErrorKind::TimedOut => {
                return Err(CallError::Offline(format!(
                    "{id} (connected to node {node}, which did not answer in time)"
                )));
            }
            Ok(Err(e)) => return Err(transport(format!("asking node {node} over NATS: {e}"))),
            Ok(Ok(msg)) => msg,
        };
        match Opened::decode(reply.payload) {
            Ok(Opened::Stream { down }) => Ok(Box::new(RelayedStream::new(
                node,
                Numbered::new(self.client.clone(), &down),
                Inbound::new(sub, node, SILENCE),
            ))),
            Ok(Opened::Offline) => Err(CallError::Offline(format!(
                "{id} (node {node} no longer holds its connection)"
            ))),
            Ok(Opened::Failed(reason)) => Err(transport(format!("node {node}: {reason}"))),
            Err(e) => Err(transport(format!("node {node} answered: {e}"))),
        }
    }
}

impl AgentLink for Router {
    fn is_online(&self, id: &str) -> bool {
        self.local.is_online(id) || self.locations.online(id)
    }

    /// This node's own connections only: another node's round trips are not known here.
    fn round_trip(&self, id: &str) -> Option<Duration> {
        self.local.round_trip(id)
    }

    /// Codes live in the store, shared by every node: the local registry reads it.
    fn code_owner<'a>(&'a self, code: &'a str) -> Pending<'a, StoreResult<Option<String>>> {
        self.local.code_owner(code)
    }

    fn offer_code<'a>(
        &'a self,
        agent: &'a str,
        code: &'a str,
        expires_at_secs: u64,
    ) -> Pending<'a, StoreResult<()>> {
        self.local.offer_code(agent, code, expires_at_secs)
    }

    fn open<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Box<dyn AgentStream>, CallError>> {
        Box::pin(async move {
            if self.local.is_online(id) {
                return self.local.open(id).await;
            }
            let agent = id.to_owned();
            let at = self
                .store
                .run(move |db| db.agent_location(&agent))
                .await
                .map_err(|e| {
                    CallError::Offline(format!("{id} (its location could not be read: {e})"))
                })?;
            match at {
                Some(at) if at.node != self.subjects.node => self.relay(id, &at.node).await,
                _ => Err(CallError::Offline(id.to_owned())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_logs() {
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact("nats://u:secret@a:4222, tls://tok@b:4222"),
            "nats://…@a:4222, tls://…@b:4222"
        );
        assert_eq!(redact("u:p@a:4222"), "…@a:4222");
    }

    #[test]
    fn subjects_are_one_token_per_node_whatever_its_name() {
        let s = Subjects {
            prefix: "deskside.0123abcd".into(),
            node: "ctl-a".into(),
        };
        assert_eq!(s.open("ctl.b"), "deskside.0123abcd.node.63746c2e62.open");
        assert!(wire::valid_subject(&s.ping("ctl-a")));
    }
}
