//! Accepting the console's connections: TLS (or plain HTTP on loopback behind a proxy),
//! then HTTP/1.1 to the router, with the peer's address attached to each request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use super::config::{ConsoleConfig, ConsoleTls};
use super::{Console, auth::Peer};

/// Browsers open a handful of connections each; this many at once is a crowded help desk
/// and then some. Past it new connections wait for a place.
const MAX_CONNECTIONS: usize = 512;
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Request headers must arrive within this (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A certificate or key file is a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    #[error("binding the web console to {at}")]
    Bind {
        at: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the console's {what} {}", .path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the console's {what} {} holds no usable PEM {what}", .path.display())]
    Pem { what: &'static str, path: PathBuf },
    #[error("issuing the console's certificate from the controller's CA")]
    Issue(#[from] crate::ca::CaError),
    #[error("setting up TLS for the console: {0}")]
    Tls(#[from] rustls::Error),
}

pub(super) async fn start(
    config: &ConsoleConfig,
    router: Router,
    console: &Console,
    cancel: CancellationToken,
) -> Result<SocketAddr, ConsoleError> {
    let acceptor = match &config.tls {
        ConsoleTls::BehindProxy { .. } => None,
        ConsoleTls::Issued { names } => {
            let mut names = names.clone();
            let host = crate::host::hostname();
            if !host.is_empty() && host != "localhost" && host != "unknown" {
                names.push(host);
            }
            let issued = console.shared.ca.server_cert(&names)?;
            Some(acceptor(
                issued.cert_pem.as_bytes(),
                issued.key_pem.as_bytes(),
                Some(&console.shared.ca.cert_pem),
            )?)
        }
        ConsoleTls::Files { cert, key } => {
            let cert_pem = read("certificate", cert)?;
            let key_pem = read("key", key)?;
            Some(acceptor(&cert_pem, &key_pem, None).map_err(|e| match e {
                ConsoleError::Pem {
                    what: "certificate",
                    ..
                } => ConsoleError::Pem {
                    what: "certificate",
                    path: cert.clone(),
                },
                ConsoleError::Pem { what, .. } => ConsoleError::Pem {
                    what,
                    path: key.clone(),
                },
                other => other,
            })?)
        }
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ConsoleError::Bind {
            at: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ConsoleError::Bind {
        at: config.listen,
        source,
    })?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    info!(%addr, scheme, "web console listening");
    tokio::spawn(accept_loop(listener, acceptor, router, cancel));
    Ok(addr)
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ConsoleError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES).read_to_end(&mut bytes))
        .map_err(|source| ConsoleError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
    Ok(bytes)
}

fn acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: Option<&str>,
) -> Result<TlsAcceptor, ConsoleError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |what| ConsoleError::Pem {
        what,
        path: PathBuf::new(),
    };
    let mut chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| pem_error("certificate"))?;
    if chain.is_empty() {
        return Err(pem_error("certificate"));
    }
    if let Some(ca) = ca_pem {
        chain.extend(CertificateDer::pem_slice_iter(ca.as_bytes()).flatten());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| pem_error("key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    cancel: CancellationToken,
) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    warn!(error = %e, "console accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, router, cancel) = (acceptor.clone(), router.clone(), cancel.clone());
        tokio::spawn(async move {
            let _place = place;
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(Peer(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let served = match acceptor {
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                return debug!(%peer, error = %e, "console TLS handshake failed");
                            }
                            Err(_) => return debug!(%peer, "console TLS handshake timed out"),
                        };
                    let conn = http.serve_connection(TokioIo::new(tls), service);
                    with_shutdown(conn, &cancel).await
                }
                None => {
                    let conn = http.serve_connection(TokioIo::new(tcp), service);
                    with_shutdown(conn, &cancel).await
                }
            };
            if let Err(e) = served {
                debug!(%peer, error = %e, "console connection ended");
            }
        });
    }
}

/// Serves a connection until it ends, or finishes its request in flight and closes when
/// the controller stops.
async fn with_shutdown<I, S>(
    conn: hyper::server::conn::http1::Connection<I, S>,
    cancel: &CancellationToken,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}
