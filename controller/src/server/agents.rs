//! Connected agents: the registry of live QUIC connections, which is how the service layer
//! reaches an agent on this node (it implements [`AgentLink`]), and each agent
//! connection's task: its check-in, then the notices it sends from its spool.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use deskside_proto::close;
use deskside_proto::limits::MAX_NAME_BYTES;
use deskside_proto::msg::agent::{
    AgentReply, AgentRequest, CheckIn, Delivery, NoticeAck, valid_key,
};
use deskside_transport::{TransportError, framed};
use prometheus_client::metrics::gauge::Gauge;
use quinn::{Connection, RecvStream, SendStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Node;
use super::refuse;
use crate::service::{AgentLink, AgentStream, CallError, Event, Pending};
use crate::store::{Store, StoreResult};

/// Agents connected to this controller, by id; the support codes their users offer are
/// in the store, shared with the cluster's other nodes.
#[derive(Debug)]
pub struct Registry {
    links: Mutex<HashMap<String, Connection>>,
    store: Store,
    /// Technician connections (by QUIC stable id), so revocation can close them.
    techs: Mutex<HashMap<usize, (String, Connection)>>,
}

/// Sets a connection gauge to a map's length; callers hold the map's lock, so
/// concurrent connects and disconnects cannot leave it stale.
fn set_count(gauge: &Gauge, len: usize) {
    gauge.set(i64::try_from(len).unwrap_or(i64::MAX));
}

impl Registry {
    /// No agents yet; support codes in `store`.
    pub fn new(store: Store) -> Registry {
        Registry {
            links: Mutex::default(),
            store,
            techs: Mutex::default(),
        }
    }

    /// Registers `conn` for `id` and sets `gauge` to the count while still holding the
    /// map, so concurrent connects and disconnects cannot leave it stale.
    fn insert(&self, id: &str, conn: Connection, gauge: &Gauge) {
        let old = {
            let mut links = self.lock();
            let old = links.insert(id.to_owned(), conn);
            set_count(gauge, links.len());
            old
        };
        if let Some(old) = old {
            refuse(
                &old,
                close::REPLACED,
                "a newer connection from this agent replaced this one",
            );
        }
    }

    /// Removes `id` only if it still maps to `conn` (a newer connection may have won);
    /// sets `gauge` as [`Registry::insert`] does.
    fn remove(&self, id: &str, conn: &Connection, gauge: &Gauge) {
        let mut links = self.lock();
        if links
            .get(id)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            links.remove(id);
        }
        set_count(gauge, links.len());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        // A panic while holding this lock cannot leave the map inconsistent (single
        // insert/remove calls), so keep serving from it.
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn add_tech(&self, name: &str, conn: &Connection, gauge: &Gauge) {
        let mut techs = self.techs.lock().unwrap_or_else(|p| p.into_inner());
        techs.insert(conn.stable_id(), (name.to_owned(), conn.clone()));
        set_count(gauge, techs.len());
    }

    pub(super) fn remove_tech(&self, conn: &Connection, gauge: &Gauge) {
        let mut techs = self.techs.lock().unwrap_or_else(|p| p.into_inner());
        techs.remove(&conn.stable_id());
        set_count(gauge, techs.len());
    }

    /// Closes the connections of revoked agents and technicians; returns how many.
    pub(super) fn close_revoked(&self, agents: &[String], techs: &[String]) -> usize {
        let reason = "revoked by the controller's admin";
        let mut closed = 0;
        for (id, conn) in self.lock().iter() {
            if agents.contains(id) {
                refuse(
                    conn,
                    close::UNKNOWN_IDENTITY,
                    &format!("agent {id} {reason}"),
                );
                closed += 1;
            }
        }
        for (name, conn) in self
            .techs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            if techs.contains(name) {
                refuse(
                    conn,
                    close::UNKNOWN_IDENTITY,
                    &format!("technician {name} {reason}"),
                );
                closed += 1;
            }
        }
        closed
    }
}

impl AgentLink for Registry {
    fn is_online(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    fn round_trip(&self, id: &str) -> Option<Duration> {
        self.lock().get(id).map(Connection::rtt)
    }

    fn code_owner<'a>(&'a self, code: &'a str) -> Pending<'a, StoreResult<Option<String>>> {
        let code = code.to_owned();
        Box::pin(
            self.store
                .run(move |db| db.code_owner(&code, crate::clock::now_secs())),
        )
    }

    fn offer_code<'a>(
        &'a self,
        agent: &'a str,
        code: &'a str,
        expires_at_secs: u64,
    ) -> Pending<'a, StoreResult<()>> {
        let (agent, code) = (agent.to_owned(), code.to_owned());
        // One live code per agent: a new one replaces the old.
        Box::pin(
            self.store.run(move |db| {
                db.offer_code(&agent, &code, expires_at_secs, crate::clock::now_secs())
            }),
        )
    }

    fn open<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Box<dyn AgentStream>, CallError>> {
        Box::pin(async move {
            let conn = self
                .lock()
                .get(id)
                .cloned()
                .ok_or_else(|| CallError::Offline(id.to_owned()))?;
            let (send, recv) = conn.open_bi().await.map_err(|e| CallError::Transport {
                agent: id.to_owned(),
                source: TransportError::Connection(e),
            })?;
            Ok(Box::new(QuicStream { send, recv }) as Box<dyn AgentStream>)
        })
    }
}

/// A request stream on an agent's QUIC connection.
struct QuicStream {
    send: SendStream,
    recv: RecvStream,
}

impl AgentStream for QuicStream {
    fn send<'a>(&'a mut self, req: &'a AgentRequest) -> Pending<'a, Result<(), TransportError>> {
        Box::pin(framed::send(&mut self.send, req))
    }

    fn reply_within(&mut self, limit: Duration) -> Pending<'_, Result<AgentReply, TransportError>> {
        Box::pin(framed::recv_within::<AgentReply>(&mut self.recv, limit))
    }

    fn read_chunk(&mut self, max: usize) -> Pending<'_, Result<Option<Bytes>, TransportError>> {
        Box::pin(framed::read_chunk(&mut self.recv, max))
    }

    fn acknowledge<'a>(&'a mut self, ack: &'a NoticeAck) -> Pending<'a, ()> {
        Box::pin(async move {
            let _ = framed::send(&mut self.send, ack).await;
            let _ = self.send.finish();
        })
    }

    fn finish(&mut self) {
        // Finishing fails only if the stream was already reset, which the read reports.
        let _ = self.send.finish();
    }

    fn stop(&mut self, code: u32) {
        let _ = self.recv.stop(code.into());
    }
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// An agent connection: read its check-in, register it, hold it until it closes.
pub(super) async fn serve(
    shared: &Node,
    conn: &Connection,
    _send: SendStream,
    mut recv: RecvStream,
    id: &str,
    cancel: &CancellationToken,
) {
    let checkin = match framed::recv_within::<CheckIn>(&mut recv, shared.hello_timeout).await {
        Ok(c) => c,
        Err(e) => return refuse(conn, close::BAD_FRAME, &format!("bad check-in: {e}")),
    };
    let c = &checkin;
    if let Err(e) = shared
        .seen
        .check_in(
            id,
            clip(&c.hostname),
            clip(&c.os),
            clip(&c.kernel),
            clip(&c.agent_version),
        )
        .await
    {
        warn!(agent = id, error = %e, "recording check-in failed");
    }
    shared
        .registry
        .insert(id, conn.clone(), &shared.metrics.agents_connected);
    let located = locate(shared, id).await;
    shared.events.send(Event::AgentOnline(id.to_owned()));
    {
        // The self-service scripts the user may run alone, ahead of any need.
        let (node, agent, conn) = (shared.shared.clone(), id.to_owned(), conn.clone());
        let closed = async move {
            conn.closed().await;
        };
        tokio::spawn(crate::service::selfservice::keep_offered(
            node, agent, closed,
        ));
    }
    info!(agent = id, hostname = %checkin.hostname, remote = %conn.remote_address(), "agent connected");
    let reason = loop {
        tokio::select! {
            reason = conn.closed() => break TransportError::explain(&reason),
            _ = cancel.cancelled() => break "controller shutting down".to_owned(),
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => notice(shared, conn, id, send, recv).await,
                Err(e) => break TransportError::explain(&e),
            },
        }
    };
    shared
        .registry
        .remove(id, conn, &shared.metrics.agents_connected);
    if let Some((node, at)) = located {
        let agent = id.to_owned();
        let cleared = shared
            .store
            .run(move |db| db.clear_agent_location(&agent, &node, at))
            .await;
        if let Err(e) = cleared {
            warn!(agent = id, error = %e, "forgetting where the agent was connected failed");
        }
    }
    shared.seen.touch(id).await;
    shared.events.send(Event::AgentOffline(id.to_owned()));
    info!(agent = id, %reason, "agent disconnected");
}

/// Records that agent `id` is connected to this node, when it is one of several, so the
/// others route its requests here; returns what names this connection's row.
async fn locate(shared: &Node, id: &str) -> Option<(String, u64)> {
    let node = shared.located.clone()?;
    let at = crate::clock::now_ms();
    let (agent, name) = (id.to_owned(), node.clone());
    let set = shared
        .store
        .run(move |db| db.set_agent_location(&agent, &name, at))
        .await;
    if let Err(e) = set {
        // Reachable from this node still; the others see it offline until it reconnects.
        warn!(agent = id, error = %e, "recording where the agent is connected failed");
    }
    Some((node, at))
}

/// One delivery from the agent's spool, acknowledged once recorded (or recorded before:
/// the key makes redelivery harmless).
async fn notice(
    shared: &Node,
    conn: &Connection,
    id: &str,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let delivery = match framed::recv_within::<Delivery>(&mut recv, shared.request_timeout).await {
        Ok(d) => d,
        Err(e) => {
            warn!(agent = id, error = %e, "unreadable delivery");
            let ack = NoticeAck::Rejected {
                reason: format!("unreadable notice: {e}"),
            };
            let _ = framed::send(&mut send, &ack).await;
            let _ = send.finish();
            return;
        }
    };
    let agent = id.to_owned();
    let revoked = shared
        .store
        .run(move |db| db.agent_credentials_of(&agent))
        .await
        .map(|c| c.is_none_or(|c| c.revoked));
    let ack = if !valid_key(&delivery.key) {
        NoticeAck::Rejected {
            reason: "malformed idempotency key".into(),
        }
    } else {
        match revoked {
            // Checked per delivery, not only by the periodic sweep.
            Ok(true) => {
                refuse(
                    conn,
                    close::UNKNOWN_IDENTITY,
                    &format!("agent {id} has been revoked"),
                );
                return;
            }
            Ok(false) => {
                let presented = super::hello::peer_certificate(conn);
                crate::service::agent_notice(shared, id, presented, &delivery.key, delivery.notice)
                    .await
            }
            // Nothing is taken from an agent whose revocation could not be checked; it
            // keeps the item and delivers it again.
            Err(e) => {
                warn!(agent = id, error = %e, "cannot check the agent's revocation; notice deferred");
                NoticeAck::Retry {
                    reason: format!("the controller could not check this agent's standing: {e}"),
                }
            }
        }
    };
    let _ = framed::send(&mut send, &ack).await;
    let _ = send.finish();
}
