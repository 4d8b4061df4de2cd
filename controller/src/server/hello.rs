//! The hello every connection opens with: protocol versions compared, then the peer
//! identified by its client certificate against the store (none → it may only enroll).

use deskside_proto::msg::hello::{Hello, HelloReply};
use deskside_proto::msg::identity::{Identity, Tier};
use deskside_proto::{PROTOCOL_VERSION, close};
use deskside_transport::{framed, pki};
use quinn::Connection;
use rustls_pki_types::CertificateDer;
use tracing::debug;

use super::{Node, refuse};

const SOFTWARE: &str = concat!("deskside ", env!("CARGO_PKG_VERSION"));

/// Who the client certificate says the peer is, after checking the store.
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    Anonymous,
    Agent { id: String },
    Technician { name: String, tier: Tier },
}

/// The hello: versions checked, the peer identified and welcomed. `None` when the
/// connection was refused (already closed with the reason).
pub(super) async fn greet(
    shared: &Node,
    conn: &Connection,
) -> Option<(Peer, quinn::SendStream, quinn::RecvStream)> {
    let within = shared.hello_timeout;
    let (mut send, mut recv) = match tokio::time::timeout(within, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return None,
        Err(_) => {
            let reason = format!("no hello within {} ms", within.as_millis());
            refuse(conn, close::TIMED_OUT, &reason);
            return None;
        }
    };
    let hello = match framed::recv_within::<Hello>(&mut recv, within).await {
        Ok(h) => h,
        Err(e) => {
            refuse(conn, close::BAD_FRAME, &format!("bad hello: {e}"));
            return None;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let reply = HelloReply::VersionMismatch {
            controller: PROTOCOL_VERSION,
            peer: hello.version,
        };
        let _ = framed::send(&mut send, &reply).await;
        let _ = send.finish();
        let _ = tokio::time::timeout(within, send.stopped()).await;
        let reason = format!(
            "protocol version mismatch: the controller speaks version {PROTOCOL_VERSION}, {} speaks version {}",
            hello.software, hello.version
        );
        refuse(conn, close::VERSION_MISMATCH, &reason);
        return None;
    }
    let peer = match identify(shared, conn).await {
        Ok(p) => p,
        Err(reason) => {
            refuse(conn, close::UNKNOWN_IDENTITY, &reason);
            return None;
        }
    };
    let welcome = HelloReply::Welcome {
        version: PROTOCOL_VERSION,
        software: SOFTWARE.into(),
    };
    framed::send(&mut send, &welcome).await.ok()?;
    debug!(remote = %conn.remote_address(), ?peer, software = %hello.software, "hello");
    Some((peer, send, recv))
}

/// Reads the client certificate's identity and checks it against the store: known,
/// not revoked, and the very certificate the controller issued last.
async fn identify(shared: &Node, conn: &Connection) -> Result<Peer, String> {
    let Some(cert) = peer_certificate(conn) else {
        return Ok(Peer::Anonymous);
    };
    let fingerprint = hex::encode(pki::fingerprint(&cert));
    let identity = common_name(&cert)
        .as_deref()
        .and_then(Identity::from_common_name)
        .ok_or("the client certificate does not name a Deskside agent or technician")?;
    match identity {
        Identity::Agent { id } => {
            let lookup = id.clone();
            let creds = shared
                .store
                .run(move |db| db.agent_credentials_of(&lookup))
                .await
                .map_err(|e| e.to_string())?;
            match creds {
                None => Err(format!("agent {id} is not enrolled with this controller")),
                Some(c) if c.revoked => {
                    Err(format!("agent {id} has been revoked; enroll it again"))
                }
                Some(c) if !c.accepts(&fingerprint) => Err(format!(
                    "the certificate presented for agent {id} is not the one issued to it"
                )),
                Some(_) => Ok(Peer::Agent { id }),
            }
        }
        Identity::Technician { name } => {
            let lookup = name.clone();
            let tech = shared
                .store
                .run(move |db| db.technician(&lookup))
                .await
                .map_err(|e| e.to_string())?;
            match tech {
                None => Err(format!("technician {name} is unknown to this controller")),
                Some(t) if t.revoked => Err(format!("technician {name} has been revoked")),
                Some(t)
                    if t.cert_sha256.as_deref() != Some(fingerprint.as_str())
                        && t.prev_cert_sha256.as_deref() != Some(fingerprint.as_str()) =>
                {
                    Err(format!(
                        "the certificate presented for technician {name} is not the one issued to them; log in again"
                    ))
                }
                Some(t) => Ok(Peer::Technician { name, tier: t.tier }),
            }
        }
    }
}

pub(super) fn peer_certificate(conn: &Connection) -> Option<CertificateDer<'static>> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.into_iter().next()
}

fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
