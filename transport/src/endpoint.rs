//! Client endpoints, connecting, and the protocol-version hello every connection opens with.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use deskside_proto::PROTOCOL_VERSION;
use deskside_proto::msg::hello::{Hello, HelloReply};
use quinn::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};

use crate::{SERVER_NAME, TransportError, framed};

/// Connecting includes the QUIC+TLS handshake; 10 s covers a slow mobile link.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The hello is two small frames; an answer later than this means a stuck controller.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `HOST:PORT` to the first address it names.
pub async fn resolve(addr: &str) -> Result<SocketAddr, TransportError> {
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| TransportError::Connect {
            addr: addr.to_owned(),
            reason: format!("cannot resolve: {e}"),
        })?;
    addrs.next().ok_or_else(|| TransportError::Connect {
        addr: addr.to_owned(),
        reason: "the name resolves to no address".into(),
    })
}

/// A client endpoint on an ephemeral port of the same address family as `target`.
pub fn client_endpoint(target: SocketAddr) -> Result<Endpoint, TransportError> {
    let bind: SocketAddr = if target.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    Ok(Endpoint::client(bind)?)
}

/// Dials `addr` with `config` and completes the handshake.
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    config: ClientConfig,
) -> Result<Connection, TransportError> {
    let connect_err = |reason: String| TransportError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let connecting = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| connect_err(e.to_string()))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => Err(connect_err(format!(
            "no answer within {}s (is `deskside serve` running and UDP allowed?)",
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(connect_err(TransportError::explain(&e))),
        Ok(Ok(conn)) => Ok(conn),
    }
}

/// Sends the hello on a new stream and checks the controller's version. Returns the
/// stream so the caller may continue the conversation on it.
pub async fn hello(
    conn: &Connection,
    software: &str,
) -> Result<(SendStream, RecvStream), TransportError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        software: software.to_owned(),
    };
    framed::send(&mut send, &hello).await?;
    match framed::recv_within::<HelloReply>(&mut recv, HELLO_TIMEOUT).await {
        Ok(HelloReply::Welcome { .. }) => Ok((send, recv)),
        Ok(HelloReply::VersionMismatch { controller, .. }) => {
            Err(TransportError::VersionMismatch {
                controller,
                ours: PROTOCOL_VERSION,
            })
        }
        // The controller closes a connection it refuses (no certificate, revoked,
        // unknown): report its reason rather than "stream reset".
        Err(e) => Err(match conn.close_reason() {
            Some(reason) => TransportError::Connection(reason),
            None => e,
        }),
    }
}
