//! Helpers for hostile-peer tests: a scene with a good agent that must keep answering,
//! raw QUIC clients that misbehave in one precise way, and certificates the controller's
//! own CA signs with whatever validity or name a test needs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::client::{ClientError, TechClient};
use deskside_controller::profile::Profile;
use deskside_controller::server;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{ErrorReply, TechReply, TechRequest};
use deskside_transport::{SERVER_NAME, TransportError, endpoint, pki, tls};
use quinn::{Connection, Endpoint};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{ALLOW_DIAGNOSTICS, Agent, Cluster, wait_online};

/// How long "eventually" may take on a busy two-core machine before a test gives up.
pub const EVENTUALLY: Duration = Duration::from_secs(30);

/// A controller, a good agent connected before any attack, and a technician with a
/// ticket on that agent: after every attack, the good agent must still answer.
#[derive(Debug)]
pub struct Scene {
    pub cluster: Cluster,
    pub good: Agent,
    pub profile: Profile,
    pub tech: TechClient,
    pub ticket: u64,
}

impl Scene {
    pub async fn start() -> Result<Scene> {
        Scene::start_with(server::Options::default()).await
    }

    pub async fn start_with(options: server::Options) -> Result<Scene> {
        let cluster = Cluster::start_with(options).await?;
        let good = cluster.agent("good", ALLOW_DIAGNOSTICS).await?;
        let (profile, tech) = cluster.technician("alice", Tier::L1).await?;
        wait_online(&tech, &good.id).await?;
        let ticket = new_ticket(&tech, &good.id).await?;
        let scene = Scene {
            cluster,
            good,
            profile,
            tech,
            ticket,
        };
        scene.good_still_served().await?;
        Ok(scene)
    }

    /// The good agent serves a diagnostics snapshot onto the ticket.
    pub async fn good_still_served(&self) -> Result<()> {
        diag(&self.tech, &self.good.id, self.ticket).await
    }

    pub async fn addr(&self) -> Result<SocketAddr> {
        Ok(endpoint::resolve(&self.cluster.addr).await?)
    }

    /// The controller's CA certificate (PEM).
    pub fn ca_pem(&self) -> Result<String> {
        Ok(std::fs::read_to_string(
            self.cluster.data.root().join("ca.crt"),
        )?)
    }

    /// A technician connection that has said hello, for sending raw streams.
    pub async fn raw_technician(&self, profile: &Profile) -> Result<(Endpoint, Connection)> {
        let addr = self.addr().await?;
        let config = tls::client_config(
            pki::cert_from_pem(&profile.ca_pem)?,
            pki::cert_from_pem(&profile.cert_pem)?,
            pki::key_from_pem(&profile.key_pem)?,
        )?;
        let ep = endpoint::client_endpoint(addr)?;
        let conn = endpoint::connect(&ep, addr, config).await?;
        endpoint::hello(&conn, "raw technician").await?;
        Ok((ep, conn))
    }

    /// A client config presenting `cert_pem` for `key_pem`, trusting the controller's CA.
    pub fn client_config(&self, cert_pem: &str, key_pem: &str) -> Result<quinn::ClientConfig> {
        Ok(tls::client_config(
            pki::cert_from_pem(&self.ca_pem()?)?,
            pki::cert_from_pem(cert_pem)?,
            pki::key_from_pem(key_pem)?,
        )?)
    }

    /// An anonymous (enrollment-style) client config pinning the controller's CA.
    pub fn anonymous_config(&self) -> Result<quinn::ClientConfig> {
        let ca = pki::cert_from_pem(&self.ca_pem()?)?;
        Ok(tls::pinned_client_config(pki::fingerprint(&ca))?)
    }

    /// A certificate for `key_pem` named `common_name`, signed by the controller's own CA,
    /// valid from `not_before` to `not_after`.
    pub fn sign(
        &self,
        key_pem: &str,
        common_name: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<String> {
        let ca_key = std::fs::read_to_string(self.cluster.data.root().join("ca.key"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem()?, KeyPair::from_pem(&ca_key)?)?;
        let subject = KeyPair::from_pem(key_pem)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Deskside");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        Ok(params.signed_by(&subject, &issuer)?.pem())
    }

    pub async fn stop(mut self) {
        self.good.stop().await;
        self.cluster.stop().await;
    }
}

/// Opens a ticket on `agent` as the technician behind `client`.
pub async fn new_ticket(client: &TechClient, agent: &str) -> Result<u64> {
    match client
        .request(&TechRequest::NewTicket {
            requester: String::new(),
            priority: "normal".into(),
            title: "hostile peers".into(),
            agent: Some(agent.into()),
        })
        .await?
    {
        TechReply::Ticket(v) => Ok(v.ticket.number),
        other => bail!("unexpected {other:?}"),
    }
}

/// A diagnostics snapshot from `agent` onto `ticket`, which must succeed.
pub async fn diag(client: &TechClient, agent: &str, ticket: u64) -> Result<()> {
    match client
        .request(&TechRequest::Diagnostics {
            agent: agent.into(),
            ticket,
        })
        .await?
    {
        TechReply::Diagnostics(r) if !r.snapshot.host.hostname.is_empty() => Ok(()),
        other => bail!("unexpected {other:?}"),
    }
}

/// The controller's error reply to `req`, which must be refused.
pub async fn refusal(client: &TechClient, req: &TechRequest) -> Result<ErrorReply> {
    match client.request(req).await {
        Ok(reply) => bail!("expected a refusal of {req:?}, got {reply:?}"),
        Err(ClientError::Refused(r)) => Ok(r.0),
        Err(e) => {
            Err(anyhow::Error::from(e).context(format!("{req:?} failed without an error reply")))
        }
    }
}

/// A client endpoint bound to `ip` (any 127.0.0.0/8 address works on Linux), so that
/// a test can play a peer from another address.
pub fn endpoint_at(ip: [u8; 4]) -> Result<Endpoint> {
    let bind = SocketAddr::from((ip, 0));
    Endpoint::client(bind).with_context(|| format!("binding a client endpoint to {bind}"))
}

/// Why a connection attempt failed: the connect error, or — when the handshake looked
/// complete from the client's side — the reason the controller closed it at the hello.
pub async fn refused_reason(
    ep: &Endpoint,
    addr: SocketAddr,
    config: quinn::ClientConfig,
) -> String {
    match endpoint::connect(ep, addr, config).await {
        Err(e) => e.to_string(),
        Ok(conn) => match endpoint::hello(&conn, "hostile").await {
            Ok(_) => "the controller accepted the connection".into(),
            Err(e) => match conn.close_reason() {
                Some(reason) => TransportError::explain(&reason),
                None => e.to_string(),
            },
        },
    }
}

/// A raw rustls client offering `alpn` (empty: no ALPN extension), trusting `ca_pem`.
pub fn alpn_config(ca_pem: &str, alpn: &[&[u8]]) -> Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki::cert_from_pem(ca_pem)?)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(config)?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// Connects with a raw config and no deskside wrapper (for handshake-level refusals).
pub async fn raw_connect(
    ep: &Endpoint,
    addr: SocketAddr,
    config: quinn::ClientConfig,
) -> Result<Connection, String> {
    let connecting = ep
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(EVENTUALLY, connecting).await {
        Err(_) => Err("no answer".into()),
        Ok(Err(e)) => Err(TransportError::explain(&e)),
        Ok(Ok(conn)) => Ok(conn),
    }
}

/// A frame carrying `payload` as its kind would: little-endian u32 length, then bytes.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// Polls `check` until it returns `Some`, or fails after [`EVENTUALLY`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > EVENTUALLY {
            bail!("{what} did not happen within {} s", EVENTUALLY.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An agent enrolled through the real token path but driven by the test: its identity
/// and key, and its connection after hello and check-in.
#[derive(Debug)]
pub struct PuppetAgent {
    pub id: String,
    pub key_pem: String,
    pub endpoint: Endpoint,
    pub conn: Connection,
    /// The check-in stream, open for as long as the agent is connected.
    pub checkin: quinn::SendStream,
}

impl Scene {
    /// Enrolls `name` and connects it as an agent the test drives frame by frame.
    pub async fn puppet_agent(&self, name: &str) -> Result<PuppetAgent> {
        let state = deskside_agent::state::StateDir::new(
            self.cluster.dir.path().join(format!("puppet-{name}")),
        );
        let token = self.cluster.token(Duration::from_secs(60))?;
        let enrolled = deskside_agent::enroll::enroll(&state, &token).await?;
        let cert_pem = std::fs::read_to_string(state.cert())?;
        let key_pem = std::fs::read_to_string(state.key())?;
        let addr = self.addr().await?;
        let endpoint = endpoint::client_endpoint(addr)?;
        let conn =
            endpoint::connect(&endpoint, addr, self.client_config(&cert_pem, &key_pem)?).await?;
        let (mut hello_send, _hello_recv) = endpoint::hello(&conn, "puppet agent").await?;
        let checkin = deskside_proto::msg::agent::CheckIn {
            hostname: name.into(),
            os: "test".into(),
            kernel: "test".into(),
            agent_version: "test".into(),
        };
        deskside_transport::framed::send(&mut hello_send, &checkin).await?;
        wait_online(&self.tech, &enrolled.agent_id).await?;
        Ok(PuppetAgent {
            id: enrolled.agent_id,
            key_pem,
            endpoint,
            conn,
            checkin: hello_send,
        })
    }
}
