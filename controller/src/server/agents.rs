//! Connected agents: the registry, and the one function that sends a request to an agent
//! and awaits its reply ([`Registry::call`]) — the seam where multi-node routing goes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use deskside_proto::close;
use deskside_proto::limits::MAX_NAME_BYTES;
use deskside_proto::msg::agent::{
    AgentNotice, AgentReply, AgentRequest, CheckIn, Delivery, NoticeAck, valid_key,
};
use deskside_transport::{TransportError, framed};
use prometheus_client::metrics::gauge::Gauge;
use quinn::{Connection, RecvStream, SendStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Shared, refuse};

/// Why a request to an agent got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("agent {0} is not connected")]
    Offline(String),
    #[error("agent {agent} did not answer within {secs} s")]
    Timeout { agent: String, secs: u64 },
    #[error("agent {agent}: {source}")]
    Transport {
        agent: String,
        source: TransportError,
    },
}

/// Agents connected to this controller, by id, and the support codes their users offer.
#[derive(Debug, Default)]
pub struct Registry {
    links: Mutex<HashMap<String, Connection>>,
    /// Support code (digits only) → (agent id, expiry in Unix seconds).
    codes: Mutex<HashMap<String, (String, u64)>>,
    /// Technician connections (by QUIC stable id), so revocation can close them.
    techs: Mutex<HashMap<usize, (String, Connection)>>,
}

/// Sets a connection gauge to a map's length; callers hold the map's lock, so
/// concurrent connects and disconnects cannot leave it stale.
fn set_count(gauge: &Gauge, len: usize) {
    gauge.set(i64::try_from(len).unwrap_or(i64::MAX));
}

/// Support codes are read over the phone: compare digits only.
fn digits(code: &str) -> String {
    code.chars().filter(char::is_ascii_digit).collect()
}

impl Registry {
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

    pub fn is_online(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// The connection to `id`, for its round-trip time and similar.
    pub fn connection(&self, id: &str) -> Option<Connection> {
        self.lock().get(id).cloned()
    }

    /// The agent whose user offered `code`, if it is still valid.
    pub fn code_owner(&self, code: &str) -> Option<String> {
        let now = crate::clock::now_secs();
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, (_, expires)| *expires > now);
        codes.get(&digits(code)).map(|(agent, _)| agent.clone())
    }

    fn offer_code(&self, agent: &str, code: &str, expires: u64) {
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        // One live code per agent: a new one replaces the old.
        codes.retain(|_, (a, _)| a != agent);
        codes.insert(digits(code), (agent.to_owned(), expires));
    }

    /// Opens a request stream to agent `id` (for requests with streamed replies).
    pub async fn open(&self, id: &str) -> Result<(quinn::SendStream, RecvStream), CallError> {
        let conn = self
            .connection(id)
            .ok_or_else(|| CallError::Offline(id.to_owned()))?;
        conn.open_bi().await.map_err(|e| CallError::Transport {
            agent: id.to_owned(),
            source: TransportError::Connection(e),
        })
    }

    /// Sends `req` to agent `id` on a new stream and waits up to `limit` for the reply.
    pub async fn call(
        &self,
        id: &str,
        req: &AgentRequest,
        limit: Duration,
    ) -> Result<AgentReply, CallError> {
        let (reply, mut send) = self.call_open(id, req, limit).await?;
        let _ = send.finish();
        Ok(reply)
    }

    /// [`Registry::call`] that leaves the request's sending side open: a reply carrying
    /// evidence is acknowledged on it once stored (see `intake::acknowledge`).
    pub async fn call_open(
        &self,
        id: &str,
        req: &AgentRequest,
        limit: Duration,
    ) -> Result<(AgentReply, SendStream), CallError> {
        let conn = self
            .connection(id)
            .ok_or_else(|| CallError::Offline(id.to_owned()))?;
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            framed::send(&mut send, req).await?;
            let reply = framed::recv_within::<AgentReply>(&mut recv, limit).await?;
            Ok::<_, TransportError>((reply, send))
        };
        exchange.await.map_err(|e| match e {
            TransportError::Timeout { .. } => CallError::Timeout {
                agent: id.to_owned(),
                secs: limit.as_secs(),
            },
            source => CallError::Transport {
                agent: id.to_owned(),
                source,
            },
        })
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
    shared: &Shared,
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
        .agents
        .insert(id, conn.clone(), &shared.metrics.agents_connected);
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
        .agents
        .remove(id, conn, &shared.metrics.agents_connected);
    shared.seen.touch(id).await;
    info!(agent = id, %reason, "agent disconnected");
}

/// One delivery from the agent's spool, acknowledged once recorded (or recorded before:
/// the key makes redelivery harmless).
async fn notice(
    shared: &Shared,
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
            Ok(false) => record_notice(shared, conn, id, &delivery.key, delivery.notice).await,
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

async fn record_notice(
    shared: &Shared,
    conn: &Connection,
    id: &str,
    key: &str,
    notice: AgentNotice,
) -> NoticeAck {
    match notice {
        AgentNotice::Renew { csr_pem } => super::renew::agent(shared, conn, id, &csr_pem).await,
        AgentNotice::Evidence { requester, item } => {
            super::intake::late(shared, id, &requester, *item).await
        }
        AgentNotice::SupportCode {
            code,
            expires_at_secs,
        } => {
            let latest = crate::clock::now_secs() + deskside_proto::msg::session::SUPPORT_CODE_SECS;
            shared
                .agents
                .offer_code(id, &code, expires_at_secs.min(latest));
            info!(agent = id, "the user offered a support code");
            NoticeAck::Recorded
        }
        AgentNotice::SessionEnded { grant, by } => {
            if let Err(reason) = super::intake::check_request_key(
                shared,
                id,
                &grant.request_key,
                grant.ticket,
                &grant.technician,
                &format!("notice that session {} ended", grant.id),
            ) {
                return NoticeAck::Rejected { reason };
            }
            let detail = format!(
                "session {} with {} on {id} ended ({by})",
                grant.id, grant.technician
            );
            let (actor, ticket) = (format!("agent {id}"), grant.ticket);
            let (agent, key) = (id.to_owned(), key.to_owned());
            let recorded = shared
                .store
                .run(move |db| {
                    db.ticket(ticket)?;
                    db.add_delivered_event(
                        &agent,
                        &key,
                        ticket,
                        &crate::store::NewEvent {
                            actor: &actor,
                            kind: "session_ended",
                            detail: &detail,
                            evidence_sha256: None,
                        },
                    )
                })
                .await;
            match recorded {
                Ok(_) => NoticeAck::Recorded,
                Err(crate::store::StoreError::NotFound(reason)) => NoticeAck::Rejected { reason },
                Err(e) => NoticeAck::Retry {
                    reason: e.to_string(),
                },
            }
        }
    }
}
