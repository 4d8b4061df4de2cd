//! The technician side of the wire: connect with the profile's certificate, send requests.

use std::time::Duration;

use deskside_proto::msg::tech::{ErrorReply, TechReply, TechRequest};
use deskside_transport::error::chain;
use deskside_transport::{TransportError, endpoint, framed, pki, tls};
use quinn::{Connection, Endpoint};
use rand::seq::SliceRandom;

use crate::profile::{Profile, ProfileError};

/// Long enough for a diagnostics pull (the agent taking its snapshot, plus storage).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest silence between streamed replies: a script's timeout is at most an hour, and
/// the controller reports its end.
pub const STREAM_IDLE: Duration = Duration::from_secs(3700);
const SOFTWARE: &str = concat!("deskside ", env!("CARGO_PKG_VERSION"));

/// An open connection to the controller as a technician.
#[derive(Debug)]
pub struct TechClient {
    /// Held for as long as the connection: the socket and its driver.
    _endpoint: Endpoint,
    conn: Connection,
}

/// The controller answered with an error: carries its code for the exit status.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub ErrorReply);

/// Why a technician's request did not get a reply it can use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The controller answered with an error reply.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The controller would not take this technician at the hello (the reason with its
    /// causes, on one line).
    #[error("controller {controller} refused technician {name}: {reason}")]
    Hello {
        controller: String,
        name: String,
        reason: String,
    },
    #[error("unexpected reply to a renewal: {0}")]
    UnexpectedRenewal(String),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
}

impl ClientError {
    /// The controller's error reply, if that is what this is.
    pub fn refused(&self) -> Option<&ErrorReply> {
        match self {
            ClientError::Refused(r) => Some(&r.0),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

impl TechClient {
    pub async fn connect(profile: &Profile) -> Result<TechClient> {
        let config = tls::client_config(
            pki::cert_from_pem(&profile.ca_pem)?,
            pki::cert_from_pem(&profile.cert_pem)?,
            pki::key_from_pem(&profile.key_pem)?,
        )?;
        // Any node serves a technician: in random order, the next when one is unreachable.
        let mut order = profile.controllers.clone();
        order.shuffle(&mut rand::thread_rng());
        let mut last = None;
        for controller in &order {
            let addr = match endpoint::resolve(controller).await {
                Ok(addr) => addr,
                Err(e) => {
                    last = Some(ClientError::Transport(e));
                    continue;
                }
            };
            let ep = endpoint::client_endpoint(addr)?;
            let conn = match endpoint::connect(&ep, addr, config.clone()).await {
                Ok(conn) => conn,
                Err(e) => {
                    if order.len() > 1 {
                        tracing::warn!(%controller, error = %chain(&e), "controller unreachable; trying the others");
                    }
                    last = Some(ClientError::Transport(e));
                    continue;
                }
            };
            // A node that answers and refuses speaks for the cluster: no next one.
            endpoint::hello(&conn, SOFTWARE)
                .await
                .map_err(|e| ClientError::Hello {
                    controller: controller.clone(),
                    name: profile.name.clone(),
                    reason: chain(&e),
                })?;
            return Ok(TechClient {
                _endpoint: ep,
                conn,
            });
        }
        Err(last.unwrap_or_else(|| {
            ClientError::Transport(TransportError::Connect {
                addr: String::new(),
                reason: "the profile names no controller".into(),
            })
        }))
    }

    /// Connects with the profile at `path`, first renewing its certificate over the
    /// connection when two thirds of its life are over (the profile is rewritten; the
    /// key and the pinned CA stay). A failed renewal is reported and the command goes on:
    /// the current certificate is still valid.
    pub async fn connect_renewing(path: &std::path::Path) -> Result<TechClient> {
        let mut profile = Profile::load(path)?;
        let client = TechClient::connect(&profile).await?;
        let cert = deskside_transport::pki::cert_from_pem(&profile.cert_pem)?;
        let window = deskside_transport::pki::validity(&cert)?;
        if crate::clock::now_secs() >= deskside_transport::pki::renew_at(window) {
            match client.renew(&profile).await {
                Ok((cert_pem, not_after_secs)) => {
                    profile.cert_pem = cert_pem;
                    profile.cert_not_after_secs = not_after_secs;
                    profile.save(path)?;
                    tracing::info!(not_after_secs, "technician certificate renewed");
                }
                Err(e) => tracing::warn!(error = %chain(&e), "certificate renewal failed"),
            }
        }
        Ok(client)
    }

    /// Asks the controller to certify the profile's key again.
    pub async fn renew(&self, profile: &Profile) -> Result<(String, u64)> {
        let csr_pem = deskside_transport::pki::csr_for_key(&profile.key_pem, &profile.name)?;
        match self
            .request(&TechRequest::RenewCertificate { csr_pem })
            .await?
        {
            TechReply::Renewed {
                cert_pem,
                not_after_secs,
            } => Ok((cert_pem, not_after_secs)),
            other => Err(ClientError::UnexpectedRenewal(format!("{other:?}"))),
        }
    }

    /// Sends one request; an error reply becomes [`Refused`].
    pub async fn request(&self, req: &TechRequest) -> Result<TechReply> {
        let reply = framed::request::<_, TechReply>(&self.conn, req, REPLY_TIMEOUT).await?;
        match reply {
            TechReply::Error(e) => Err(Refused(e).into()),
            other => Ok(other),
        }
    }

    /// Sends one request whose replies stream: `each` sees every intermediate reply; the
    /// last one (a result, or an error as [`Refused`]) is returned.
    pub async fn stream(
        &self,
        req: &TechRequest,
        mut each: impl FnMut(&TechReply),
    ) -> Result<TechReply> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        framed::send(&mut send, req).await?;
        let _ = send.finish();
        loop {
            let reply = framed::recv_within::<TechReply>(&mut recv, STREAM_IDLE).await?;
            match reply {
                TechReply::RunOutput { .. }
                | TechReply::BundleFile { .. }
                | TechReply::CollectProgress { .. } => each(&reply),
                TechReply::Error(e) => return Err(Refused(e).into()),
                other => return Ok(other),
            }
        }
    }

    /// Closes the connection once its close frame has left (see [`endpoint::close`]).
    pub async fn close(self) {
        endpoint::close(&self.conn, deskside_proto::close::DONE.into(), b"done").await;
    }
}
