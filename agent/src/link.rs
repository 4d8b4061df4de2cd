//! The link to the controller: connect, say hello, check in, answer requests on streams
//! the controller opens; on any loss, reconnect with jittered exponential backoff.

use std::time::{Duration, Instant};

use deskside_proto::close;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, CheckIn, NoticeAck};
use deskside_proto::msg::diag::ControllerLink;
use deskside_transport::{TransportError, endpoint, framed, pki, tls};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::{Backoff, BackoffError};
use crate::control::ControlError;
use crate::enroll::SOFTWARE;
use crate::failover::Rotation;
use crate::local_user::LocalSessions;
use crate::serve::{AgentCtx, CtxError};
use crate::state::{StateDir, StateError, write_atomic};

pub use crate::backoff::{RECONNECT_BASE, RECONNECT_CAP};
/// A connection that lasted this long was healthy: the next failure starts from the base.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// A request frame must arrive whole within this after the stream opens.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the controller may take to store an item sent as a reply (verify, write,
/// commit) before it is left to the spool's pump to deliver again.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the agent service could not start, or a connection to the controller failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("enrollment.toml: script_public_key is not 32 hex bytes; enroll again")]
    ScriptKey,
    #[error("loading the agent's certificate and key")]
    Credentials(#[source] TransportError),
    /// A state file cannot be read (a damaged enrollment record is a bad state file).
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Backoff(#[from] BackoffError),
    #[error(transparent)]
    Ctx(#[from] CtxError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

type Result<T> = std::result::Result<T, LinkError>;

/// What `deskside-agent status` reads: the service's view of its link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// `connected`, `disconnected` or `stopped`.
    pub state: String,
    pub since_secs: u64,
    pub controller: String,
    pub last_error: Option<String>,
    pub pid: u32,
}

fn write_status(state: &StateDir, status: &str, controller: &str, last_error: Option<String>) {
    let s = LinkStatus {
        state: status.to_owned(),
        since_secs: crate::now_secs(),
        controller: controller.to_owned(),
        last_error,
        pid: std::process::id(),
    };
    let written = match serde_json::to_vec_pretty(&s) {
        Ok(bytes) => write_atomic(&state.status_file(), &bytes, 0o644).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = written {
        debug!(error = %e, "status file not written");
    }
}

/// Runs the agent service until `cancel` fires, with the default reconnect timing, and
/// this machine's local sessions deciding who may use the control socket.
pub async fn run(state: StateDir, cancel: CancellationToken) -> Result<()> {
    let backoff = Backoff::new(RECONNECT_BASE, RECONNECT_CAP)?;
    run_with(state, backoff, LocalSessions::system(), cancel).await
}

/// [`run`] with reconnect timing from the agent's config and local sessions read from
/// `access` (tests give their own utmp).
pub async fn run_with(
    state: StateDir,
    mut backoff: Backoff,
    access: LocalSessions,
    cancel: CancellationToken,
) -> Result<()> {
    let enrollment = state.enrollment()?;
    // 0700 whatever an older package left (it made the directory 0711 for the socket).
    state.create()?;
    // Checked once up front: a broken state dir is an error, not a reconnect loop.
    client_config(&state)?;
    let script_key: [u8; 32] = hex::decode(&enrollment.script_public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(LinkError::ScriptKey)?;
    let ctx = AgentCtx::new(
        state.clone(),
        enrollment.agent_id.clone(),
        state.read(&state.key())?,
        script_key,
    )?;
    let controllers = enrollment.controllers.join(", ");
    info!(agent = %enrollment.agent_id, %controllers, "agent starting");
    crate::control::serve(ctx.clone(), access, cancel.clone())?;
    // Slow probes (pending updates) warm up now, not when a technician is waiting.
    crate::diag::warm_up();
    let mut rotation = Rotation::new(&enrollment.controllers);
    loop {
        let started = Instant::now();
        let controller = rotation.next(&mut rand::thread_rng());
        // Read per connection: renewal replaces the certificate while the agent runs.
        let attempt = match client_config(&state) {
            Ok(config) => session(&ctx, &controller, config, &cancel).await,
            Err(e) => Err(e),
        };
        let error = match attempt {
            Ok(reason) => {
                info!(%controller, %reason, "disconnected");
                rotation.after_loss(&controller, &mut rand::thread_rng());
                Some(reason)
            }
            Err(e) => {
                let e = crate::error_chain(&e);
                warn!(%controller, error = %e, "cannot reach the controller");
                Some(e)
            }
        };
        if cancel.is_cancelled() {
            write_status(&state, "stopped", &controller, None);
            return Ok(());
        }
        write_status(&state, "disconnected", &controller, error);
        if started.elapsed() >= HEALTHY_AFTER {
            backoff.reset();
        }
        let delay = backoff.next_delay(&mut rand::thread_rng());
        debug!(?delay, "reconnecting after");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => {
                write_status(&state, "stopped", &controller, None);
                return Ok(());
            }
        }
    }
}

fn client_config(state: &StateDir) -> Result<quinn::ClientConfig> {
    tls::client_config(
        pki::cert_from_pem(&state.read(&state.ca())?)?,
        pki::cert_from_pem(&state.read(&state.cert())?)?,
        pki::key_from_pem(&state.read(&state.key())?)?,
    )
    .map_err(LinkError::Credentials)
}

/// One connection, from dial to loss. Returns why it ended.
async fn session(
    ctx: &AgentCtx,
    controller: &str,
    config: quinn::ClientConfig,
    cancel: &CancellationToken,
) -> Result<String> {
    // Dialling can take up to the connect timeout when nothing answers; a SIGTERM then
    // must not wait for it.
    let dial = async {
        let addr = endpoint::resolve(controller).await?;
        let ep = endpoint::client_endpoint(addr)?;
        let conn = endpoint::connect(&ep, addr, config).await?;
        Ok::<_, TransportError>((addr, ep, conn))
    };
    let (addr, ep, conn) = tokio::select! {
        dialled = dial => dialled?,
        _ = cancel.cancelled() => return Ok("agent shutting down".to_owned()),
    };
    let (mut send, _recv) = tokio::select! {
        hello = endpoint::hello(&conn, SOFTWARE) => hello?,
        _ = cancel.cancelled() => {
            endpoint::close(&conn, close::SHUTDOWN.into(), b"agent shutting down").await;
            return Ok("agent shutting down".to_owned());
        }
    };
    let (hostname, os, kernel) = crate::host_identity();
    let checkin = CheckIn {
        hostname,
        os,
        kernel,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    framed::send(&mut send, &checkin).await?;
    let _ = send.finish();
    info!(controller = %addr, "connected");
    write_status(&ctx.state, "connected", controller, None);
    let pump = {
        let (deliveries, conn) = (ctx.deliveries.clone(), conn.clone());
        tokio::spawn(async move { deliveries.pump(&conn).await })
    };
    let renewing = CancellationToken::new();
    tokio::spawn(crate::renew::keep_renewed(
        ctx.clone(),
        conn.clone(),
        renewing.clone(),
    ));
    let mut silent = false;
    let reason = loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                endpoint::close(&conn, close::SHUTDOWN.into(), b"agent shutting down").await;
                break "agent shutting down".to_owned();
            }
            _ = endpoint::peer_silent(&conn, tls::PEER_SILENCE) => {
                conn.close(close::TIMED_OUT.into(), b"the controller went silent");
                silent = true;
                break format!(
                    "the controller sent nothing for {} s (not even an answer to a keep-alive): it is gone",
                    tls::PEER_SILENCE.as_secs()
                );
            }
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let (ctx, conn) = (ctx.clone(), conn.clone());
                    tokio::spawn(async move { answer_stream(&ctx, &conn, send, recv).await });
                }
                Err(e) => break TransportError::explain(&e),
            },
        }
    };
    pump.abort();
    renewing.cancel();
    // A lost connection is already drained; a closing one would hold a stopping agent
    // for QUIC's closing period, which grows with the probe timeout of a silent peer.
    // A controller gone silent would hold us for the closing period's probe timeouts too.
    if !cancel.is_cancelled() && !silent {
        ep.wait_idle().await;
    }
    Ok(reason)
}

async fn answer_stream(
    ctx: &AgentCtx,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let req = match framed::recv_within::<AgentRequest>(&mut recv, REQUEST_TIMEOUT).await {
        Ok(req) => req,
        Err(e) => {
            let reply = AgentReply::Failed {
                reason: format!("the agent could not read the request: {e}"),
            };
            let _ = framed::send(&mut send, &reply).await;
            let _ = send.finish();
            return;
        }
    };
    let req = match req {
        AgentRequest::CollectFile {
            requester,
            path,
            max_bytes,
        } => {
            let span = tracing::info_span!(
                "collect",
                technician = %requester.technician,
                ticket = requester.ticket,
                agent = %ctx.agent_id
            );
            let served = crate::collect::serve(ctx, requester, path, max_bytes, send, recv);
            return tracing::Instrument::instrument(served, span).await;
        }
        other => other,
    };
    let link = ControllerLink {
        address: conn.remote_address().to_string(),
        rtt_ms: conn.rtt().as_secs_f64() * 1000.0,
    };
    let (tx, mut rx) = mpsc::channel::<AgentReply>(32);
    let who = req.requester();
    let span = tracing::info_span!(
        "request",
        technician = %who.technician,
        tier = %who.tier,
        ticket = who.ticket,
        agent = %ctx.agent_id
    );
    let handler = {
        let ctx = ctx.clone();
        tokio::spawn(tracing::Instrument::instrument(
            async move { crate::serve::handle(&ctx, req, link, tx).await },
            span,
        ))
    };
    let mut delivering = true;
    // Evidence in a reply is also in the spool: it is forgotten only when the controller
    // acknowledges it on this stream; otherwise the pump delivers it again later.
    let mut claim = None;
    while let Some(reply) = rx.recv().await {
        if let AgentReply::Snapshot(item) | AgentReply::Evidence(item) = &reply {
            claim = Some(ctx.deliveries.adopt(&item.key));
        }
        // Keep draining after a failed write so the handler never blocks on us.
        if delivering && let Err(e) = framed::send(&mut send, &reply).await {
            warn!(error = %e, "reply not delivered");
            delivering = false;
        }
    }
    let _ = handler.await;
    let _ = send.finish();
    if let Some(claim) = claim.filter(|_| delivering) {
        match framed::recv_within::<NoticeAck>(&mut recv, RECEIPT_TIMEOUT).await {
            Ok(ack) => claim.settle(&ack).await,
            Err(e) => {
                debug!(key = claim.key(), error = %e, "no receipt; the spool will deliver it again");
            }
        }
    }
}
