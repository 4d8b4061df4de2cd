//! rustls configuration for every side: the controller (mutual TLS, anonymous clients
//! allowed only so they can enroll), enrolling clients (CA pinned by fingerprint), and
//! enrolled clients (mutual TLS against the controller's CA).

use std::sync::Arc;
use std::time::Duration;

use deskside_proto::ALPN;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::TransportError;
use crate::pki::fingerprint;

/// Keep NAT bindings open and notice a dead peer: agents sit behind home routers whose
/// UDP mappings expire after ~30 s of silence. 25 s is the interval WireGuard settled on
/// for the same reason; a lost keep-alive is re-probed within milliseconds by loss
/// detection, well before the mapping goes. Every keep-alive costs the controller a
/// packet in and an ACK out: at 20,000 agents, 15 s held 11 % of a core just for them.
pub const KEEP_ALIVE: Duration = Duration::from_secs(25);
/// A connection silent for this long (no keep-alives either) is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that has heard nothing from the controller for this long gives the
/// connection up itself ([`crate::endpoint::peer_silent`]). Each keep-alive is answered
/// with an ACK at once, so a live controller is never silent for much more than
/// [`KEEP_ALIVE`]; the 10 s beyond it cover a lost keep-alive and its re-probes. The idle
/// timer alone would notice a controller that died without a word only
/// `KEEP_ALIVE + IDLE_TIMEOUT` (85 s) after its last packet, since every keep-alive sent
/// into the void restarts it; a cluster's agents must be on another node within 60 s.
pub const PEER_SILENCE: Duration = Duration::from_secs(KEEP_ALIVE.as_secs() + 10);
/// Concurrent request streams one peer may open. A technician CLI uses a handful; the
/// controller sends an agent a few at a time. More is a misbehaving peer.
pub const MAX_CONCURRENT_STREAMS: u32 = 64;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which end of a connection a transport config is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Agents and technicians: they sit behind NAT and keep the path alive.
    Client,
    /// The controller sends no keep-alives of its own: every client already sends one
    /// each [`KEEP_ALIVE`], which keeps both idle timers running, and with 20,000 agents
    /// the controller's own would double the packets it handles while nothing happens.
    Server,
}

fn transport_config(side: Side) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    if side == Side::Client {
        t.keep_alive_interval(Some(KEEP_ALIVE));
    }
    // 60 s always fits a VarInt; the fallback keeps quinn's default rather than panic.
    if let Ok(idle) = IDLE_TIMEOUT.try_into() {
        t.max_idle_timeout(Some(idle));
    }
    t.max_concurrent_bidi_streams(MAX_CONCURRENT_STREAMS.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}

fn tls_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Tls(e.to_string())
}

/// The controller's server config. `chain` is `[server cert, CA cert]` so that enrolling
/// clients can find the CA they pinned.
pub fn server_config(
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ServerConfig, TransportError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(tls_err)?;
    // Anonymous clients complete the handshake so they can enroll; the server refuses
    // them every other request (see the controller's connection handler).
    let client_verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(tls_err)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(tls_err)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport_config(Side::Server));
    Ok(config)
}

/// An enrolled client: trusts only `ca` and presents its own certificate.
pub fn client_config(
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(tls_err)?;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .map_err(tls_err)?;
    finish_client(tls)
}

/// A client that has no certificate yet: trusts the controller only if its chain contains
/// a CA whose SHA-256 is `ca_sha256` (from the enrollment token).
pub fn pinned_client_config(ca_sha256: [u8; 32]) -> Result<quinn::ClientConfig, TransportError> {
    let provider = provider();
    let verifier = PinnedCa {
        ca_sha256,
        algorithms: provider.signature_verification_algorithms,
        provider: provider.clone(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    finish_client(tls)
}

fn finish_client(mut tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TransportError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(tls_err)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport_config(Side::Client));
    Ok(config)
}

/// Verifies the controller against the CA named by fingerprint in an enrollment token:
/// the CA must be in the presented chain, and the end-entity certificate must chain to it
/// under the usual WebPKI rules (validity, name, signatures).
#[derive(Debug)]
struct PinnedCa {
    ca_sha256: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.ca_sha256)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the controller's CA does not match the fingerprint pinned in the token".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
