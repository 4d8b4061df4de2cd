//! Keeping the agent's certificate valid without anyone's help: once two thirds of its
//! life are over, the agent asks the controller over the live link to certify its key
//! again, and writes the new certificate. The key never changes (evidence it signed
//! stays verifiable), nor does the CA it pinned at enrollment. One timer per connection,
//! no polling.

use std::time::Duration;

use deskside_proto::msg::agent::{AgentNotice, Delivery, NoticeAck};
use deskside_transport::{TransportError, framed, pki, tls};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::serve::AgentCtx;
use crate::state::{StateError, write_atomic};

/// Why the certificate was not renewed (the agent tries again later).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewError {
    #[error("asking the controller to renew the certificate")]
    Asking(#[source] TransportError),
    #[error("the controller did not renew the certificate: {0}")]
    NotRenewed(String),
    #[error("the controller answered the renewal without a certificate")]
    NoCertificate,
    #[error("the renewed certificate does not fit the agent's key")]
    DoesNotFit(#[source] TransportError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Encode(#[from] toml::ser::Error),
}

type Result<T> = std::result::Result<T, RenewError>;

/// The controller signs a certificate and writes one row; this bounds a stuck one.
const RENEW_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed renewal, try again this much later (or at half the remaining life,
/// whichever is sooner), on this connection or the next.
const RENEW_RETRY: Duration = Duration::from_secs(600);

/// Seconds from now until the current certificate is due for renewal (0: now).
fn due_in(ctx: &AgentCtx) -> Result<(Duration, u64)> {
    let cert = pki::cert_from_pem(&ctx.state.read(&ctx.state.cert())?)?;
    let window = pki::validity(&cert)?;
    let now = crate::now_secs();
    let due = pki::renew_at(window).saturating_sub(now);
    Ok((Duration::from_secs(due), window.1))
}

/// Renews the certificate whenever it falls due while `conn` lives; returns when the
/// connection ends (`cancel`).
pub async fn keep_renewed(ctx: AgentCtx, conn: quinn::Connection, cancel: CancellationToken) {
    let mut renewed = false;
    loop {
        let wait = match due_in(&ctx) {
            // A fresh certificate already due (clocks apart): no tight loop.
            Ok((wait, _)) if renewed && wait.is_zero() => RENEW_RETRY,
            Ok((wait, _)) => wait,
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "cannot read the agent's certificate");
                return;
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let outcome = renew(&ctx, &conn).await;
        renewed = outcome.is_ok();
        if let Err(e) = outcome {
            let left = due_in(&ctx)
                .map(|(_, not_after)| not_after.saturating_sub(crate::now_secs()))
                .unwrap_or(0);
            let retry = RENEW_RETRY.min(Duration::from_secs(left / 2).max(Duration::from_secs(1)));
            warn!(error = %crate::error_chain(&e), ?retry, "certificate renewal failed");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
            }
        }
    }
}

/// One renewal round trip; the new certificate is checked against the agent's key and
/// the pinned CA before it replaces the old one.
pub async fn renew(ctx: &AgentCtx, conn: &quinn::Connection) -> Result<()> {
    let key_pem = ctx.state.read(&ctx.state.key())?;
    let csr_pem = pki::csr_for_key(&key_pem, &ctx.agent_id)?;
    let request = Delivery {
        key: crate::spool::new_key(),
        notice: AgentNotice::Renew { csr_pem },
    };
    let reply = framed::request::<_, NoticeAck>(conn, &request, RENEW_TIMEOUT)
        .await
        .map_err(RenewError::Asking)?;
    let cert_pem = match reply {
        NoticeAck::Renewed { cert_pem, .. } => cert_pem,
        NoticeAck::Rejected { reason } | NoticeAck::Retry { reason } => {
            return Err(RenewError::NotRenewed(reason));
        }
        NoticeAck::Recorded | NoticeAck::Opened { .. } => return Err(RenewError::NoCertificate),
    };
    let cert = pki::cert_from_pem(&cert_pem)?;
    let (_, not_after) = pki::validity(&cert)?;
    // rustls refuses a certificate that does not match the key; the CA is the pinned one.
    tls::client_config(
        pki::cert_from_pem(&ctx.state.read(&ctx.state.ca())?)?,
        cert,
        pki::key_from_pem(&key_pem)?,
    )
    .map_err(RenewError::DoesNotFit)?;
    write_atomic(&ctx.state.cert(), cert_pem.as_bytes(), 0o644)?;
    let mut enrollment = ctx.state.enrollment()?;
    enrollment.cert_not_after_secs = not_after;
    write_atomic(
        &ctx.state.enrollment_file(),
        toml::to_string(&enrollment)?.as_bytes(),
        0o644,
    )?;
    info!(not_after, "certificate renewed over the live link");
    Ok(())
}
