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

/// The controller's endpoint on `listen`. Stateless resets are keyed from
/// `reset_secret` (persistent key material of the controller) rather than a random key
/// per process: after a crash and a restart on the same address, packets of connections
/// from before the crash get a reset their peers can verify, so agents and technicians
/// notice at once and reconnect, instead of after the idle timeout. The connection-ID
/// validation key is derived the same way: a restarted endpoint must recognise its
/// predecessor's IDs as its own to answer them with a reset rather than drop them.
pub fn server_endpoint(
    config: quinn::ServerConfig,
    listen: SocketAddr,
    reset_secret: &[u8],
) -> Result<Endpoint, TransportError> {
    use ring::hmac;
    let derive = hmac::Key::new(hmac::HMAC_SHA256, reset_secret);
    let reset_tag = hmac::sign(&derive, b"deskside stateless reset v1");
    let reset_key = hmac::Key::new(hmac::HMAC_SHA256, reset_tag.as_ref());
    let cid_tag = hmac::sign(&derive, b"deskside connection ids v1");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(cid_tag.as_ref().get(..8).unwrap_or(&[0u8; 8]));
    let cid_key = u64::from_le_bytes(cid_key);
    let mut endpoint_config = quinn::EndpointConfig::new(std::sync::Arc::new(reset_key));
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(listen)?;
    let runtime = quinn::default_runtime().ok_or_else(|| {
        TransportError::Io(std::io::Error::other("no async runtime for the endpoint"))
    })?;
    Ok(Endpoint::new(
        endpoint_config,
        Some(config),
        socket,
        runtime,
    )?)
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
