//! The simulated agents: each dials the controller over a shared client endpoint, says
//! hello, checks in, answers the streams the controller opens, and on any loss reconnects
//! with the real agent's backoff policy.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use deskside_agent::backoff::Backoff;
use deskside_agent::link::{RECONNECT_BASE, RECONNECT_CAP};
use deskside_proto::close;
use deskside_proto::msg::agent::CheckIn;
use deskside_proto::msg::diag::Snapshot;
use deskside_transport::{endpoint, framed};
use quinn::Endpoint;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::answer::{self, Identity};
use crate::enroll::{Enrolled, SOFTWARE};

/// Agents sharing one client endpoint (one UDP socket), like machines behind one NAT.
pub const AGENTS_PER_ENDPOINT: usize = 250;
/// Source addresses 127.0.1.1 … 127.0.1.250: Linux routes all of 127/8 to loopback.
const SOURCE_ADDRESSES: usize = 250;
/// Connection attempts in flight per source address; the controller bounds
/// unidentified connections per address (32), so stay at half of that.
const ATTEMPTS_PER_ADDRESS: usize = 16;
/// As the real agent's link: a connection that lasted this long was healthy, and the
/// next failure starts the backoff from its base again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Counters shared by every simulated agent.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connection attempts started, ever.
    pub attempts: AtomicU64,
    /// Agents connected and checked in right now.
    pub connected: AtomicU64,
    /// Connections ended by a stateless reset: the peer no longer knew them.
    pub lost_reset: AtomicU64,
    /// Connections ended by the idle timeout: nothing heard for that long.
    pub lost_idle: AtomicU64,
    /// Connections ended any other way (closed by the peer, refused, …).
    pub lost_other: AtomicU64,
}

impl Counters {
    fn lost(&self, e: &quinn::ConnectionError) {
        let counter = match e {
            quinn::ConnectionError::Reset => &self.lost_reset,
            quinn::ConnectionError::TimedOut => &self.lost_idle,
            _ => &self.lost_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One client endpoint and the gate on its connection attempts.
#[derive(Debug)]
struct Source {
    endpoint: Endpoint,
    gate: Semaphore,
}

/// The running swarm.
#[derive(Debug)]
pub struct Swarm {
    pub counters: Arc<Counters>,
    agents: Vec<(CancellationToken, JoinHandle<()>)>,
    sources: Vec<Arc<Source>>,
}

/// The check-in every simulated agent sends, apart from its hostname.
#[derive(Debug, Clone)]
pub struct Platform {
    pub os: String,
    pub kernel: String,
}

impl Swarm {
    /// Starts one task per agent; they connect on their own, gated per source address.
    pub fn start(
        enrolled: Vec<Enrolled>,
        controller: SocketAddr,
        fixed: Arc<Snapshot>,
        platform: &Platform,
    ) -> Result<Swarm> {
        let counters = Arc::new(Counters::default());
        let mut sources = Vec::new();
        for i in 0..enrolled.len().div_ceil(AGENTS_PER_ENDPOINT) {
            let last = u8::try_from(i % SOURCE_ADDRESSES + 1).unwrap_or(1);
            let bind = SocketAddr::from((Ipv4Addr::new(127, 0, 1, last), 0));
            let endpoint = Endpoint::client(bind)
                .with_context(|| format!("binding a client endpoint on {bind}"))?;
            sources.push(Arc::new(Source {
                endpoint,
                gate: Semaphore::new(ATTEMPTS_PER_ADDRESS),
            }));
        }
        let mut agents = Vec::with_capacity(enrolled.len());
        for (i, agent) in enrolled.into_iter().enumerate() {
            let source = sources
                .get(i / AGENTS_PER_ENDPOINT)
                .context("an agent without an endpoint")?
                .clone();
            let cancel = CancellationToken::new();
            let sim = SimAgent {
                me: Identity {
                    hostname: agent.hostname,
                    key_pem: agent.key_pem,
                },
                config: agent.config,
                checkin_os: platform.os.clone(),
                checkin_kernel: platform.kernel.clone(),
            };
            let (fixed, counters, c) = (fixed.clone(), counters.clone(), cancel.clone());
            let task = tokio::spawn(async move {
                sim.run(&source, controller, &fixed, &counters, &c).await;
            });
            agents.push((cancel, task));
        }
        Ok(Swarm {
            counters,
            agents,
            sources,
        })
    }

    /// Stops the agents from index `keep` on (they close their connections).
    pub async fn stop_from(&mut self, keep: usize) {
        let stopped: Vec<_> = self.agents.drain(keep.min(self.agents.len())..).collect();
        for (cancel, _) in &stopped {
            cancel.cancel();
        }
        for (_, task) in stopped {
            let _ = task.await;
        }
    }

    pub async fn stop(mut self) {
        self.stop_from(0).await;
        for s in &self.sources {
            s.endpoint.wait_idle().await;
        }
    }
}

#[derive(Debug)]
struct SimAgent {
    me: Identity,
    config: quinn::ClientConfig,
    checkin_os: String,
    checkin_kernel: String,
}

impl SimAgent {
    async fn run(
        &self,
        source: &Source,
        controller: SocketAddr,
        fixed: &Arc<Snapshot>,
        counters: &Counters,
        cancel: &CancellationToken,
    ) {
        // The real agent's reconnect policy; its parameters are constants it validates.
        let Ok(mut backoff) = Backoff::new(RECONNECT_BASE, RECONNECT_CAP) else {
            return;
        };
        loop {
            let started = Instant::now();
            let _ = self
                .session(source, controller, fixed, counters, cancel)
                .await;
            if cancel.is_cancelled() {
                return;
            }
            if started.elapsed() >= HEALTHY_AFTER {
                backoff.reset();
            }
            let delay = backoff.next_delay(&mut rand::thread_rng());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// One connection, from dial to loss.
    async fn session(
        &self,
        source: &Source,
        controller: SocketAddr,
        fixed: &Arc<Snapshot>,
        counters: &Counters,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let (conn, _hello_recv) = {
            let _permit = source.gate.acquire().await?;
            counters.attempts.fetch_add(1, Ordering::Relaxed);
            let conn = endpoint::connect(&source.endpoint, controller, self.config.clone()).await?;
            let (mut send, recv) = endpoint::hello(&conn, SOFTWARE).await?;
            let checkin = CheckIn {
                hostname: self.me.hostname.clone(),
                os: self.checkin_os.clone(),
                kernel: self.checkin_kernel.clone(),
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            framed::send(&mut send, &checkin).await?;
            let _ = send.finish();
            (conn, recv)
        };
        counters.connected.fetch_add(1, Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    conn.close(close::SHUTDOWN.into(), b"agent shutting down");
                    break;
                }
                stream = conn.accept_bi() => match stream {
                    Ok((send, recv)) => answer::serve_stream(fixed, &self.me, &conn, send, recv).await,
                    Err(e) => {
                        counters.lost(&e);
                        break;
                    }
                },
            }
        }
        counters.connected.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }
}
