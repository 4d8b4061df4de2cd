//! Client endpoints, connecting, and the protocol-version hello every connection opens with.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use deskside_proto::PROTOCOL_VERSION;
use deskside_proto::msg::hello::{Hello, HelloReply};
use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, RecvStream, SendStream, VarInt};
use sha2::{Digest, Sha256};

use crate::{SERVER_NAME, TransportError, framed};

/// Connecting includes the QUIC+TLS handshake; 10 s covers a slow mobile link.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The hello is two small frames; an answer later than this means a stuck controller.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest [`close`] waits for the close frame to leave.
pub const CLOSE_GRACE: Duration = Duration::from_millis(10);

/// Shortest gap between two stateless resets: none. quinn's default (20 ms, 50 a second)
/// means a controller back from a crash takes minutes to tell 10,000 agents their old
/// connections are gone. Any gap above zero is worse than it looks: quinn stamps every
/// datagram of one receive pass with the same `now`, so the gap allows at most one reset
/// per pass. At 50 µs, 30,784 of 41,034 packets answering a restart were ignored, and
/// each ignored keep-alive doubles its sender's probe timeout before it asks again. A
/// reset is always smaller than the packet that caused it, so answering each cannot
/// amplify traffic; each costs one HMAC.
pub const MIN_RESET_INTERVAL: Duration = Duration::ZERO;

/// Length of the connection IDs the controller issues: 64 random bits.
pub const CID_LEN: usize = 8;

/// The controller's endpoint settings. The stateless-reset key derives from `secret` (the
/// server's private key), so a controller restarted after a crash answers its
/// predecessor's connections with resets they accept, and agents notice at their next
/// keep-alive rather than at their idle timeout (60 s), all together.
///
/// Connection IDs are fully random. quinn's hashed generator, even with a key kept across
/// restarts, has only 2^24 distinct IDs (3 random bytes and a 5-byte check), and a
/// restarted controller cannot know which ones its predecessor issued: each ID it issues
/// matches a given live old one with a chance of 1 in 16.7 million, and with tens of
/// thousands of each, some match. An agent whose ID matches has its keep-alives routed to
/// the new connection, where they cannot decrypt, so it gets no reset. With the hashed
/// IDs, 11 of 10,000 agents waited out their idle timeout after a restart and no reset
/// was ever sent for them; with 64 random bits, none did.
pub fn server_endpoint_config(secret: &[u8]) -> EndpointConfig {
    let mut h = Sha256::new();
    h.update(b"deskside quic stateless reset v1");
    h.update(secret);
    let reset: [u8; 32] = h.finalize().into();
    let mut config = EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    config
        .cid_generator(|| Box::new(quinn_proto::RandomConnectionIdGenerator::new(CID_LEN)))
        .min_reset_interval(MIN_RESET_INTERVAL);
    config
}

/// Kernel receive buffer of the controller's UDP socket: 8 MiB absorbs a burst of
/// bulk transfers (a collected file) without drops; it is kernel memory used only
/// while datagrams wait, shared by every connection.
pub const SERVER_RECV_BUFFER: usize = 8 * 1024 * 1024;

/// A server endpoint on `listen` with [`server_endpoint_config`].
pub fn server_endpoint(
    listen: SocketAddr,
    secret: &[u8],
    config: quinn::ServerConfig,
) -> Result<Endpoint, TransportError> {
    let socket = std::net::UdpSocket::bind(listen)?;
    // Datagrams that arrive while the endpoint is busy wait here; when it overflows they
    // are dropped and the sender's congestion control backs off. The kernel caps the
    // size at net.core.rmem_max; a smaller buffer still works, only slower.
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(SERVER_RECV_BUFFER) {
        tracing::debug!(error = %e, "UDP receive buffer left at the system default");
    }
    Ok(Endpoint::new(
        server_endpoint_config(secret),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

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

/// Closes `conn` for a client about to exit, and returns once the close frame has been
/// handed to the socket (at most [`CLOSE_GRACE`]). Waiting for the endpoint to go idle
/// instead would hold every command for QUIC's closing period (three probe timeouts,
/// ~80 ms even on loopback) just to answer a peer that lost the frame, and such a peer
/// drops the connection at its idle timeout anyway. Exiting at once, before the frame
/// left, would leave the controller holding the connection for that whole timeout.
pub async fn close(conn: &Connection, code: VarInt, reason: &[u8]) {
    conn.close(code, reason);
    // A closed connection sends nothing but its close frame, and quinn counts a datagram
    // as it hands it to the socket. Read after `close`, so if the frame left in between
    // this waits out the grace, as a plain timeout would.
    let before = conn.stats().udp_tx.datagrams;
    let sent = async {
        while conn.stats().udp_tx.datagrams == before {
            tokio::task::yield_now().await;
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, sent).await;
}

/// How often [`peer_silent`] looks at the connection's receive counter.
const SILENCE_CHECK: Duration = Duration::from_secs(1);

/// Returns once nothing at all (not even an ACK) has arrived on `conn` for `limit`. A
/// client races this against its connection (with [`crate::tls::PEER_SILENCE`]) to
/// notice a peer that died without a word sooner than the idle timer would. It only
/// reads quinn's counters: no packet is sent for it.
pub async fn peer_silent(conn: &Connection, limit: Duration) {
    let mut seen = conn.stats().udp_rx.datagrams;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(SILENCE_CHECK).await;
        let now = conn.stats().udp_rx.datagrams;
        if now != seen {
            seen = now;
            last_heard = tokio::time::Instant::now();
        } else if last_heard.elapsed() >= limit {
            return;
        }
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
