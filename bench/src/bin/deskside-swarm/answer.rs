//! How a simulated agent answers a request stream the controller opens: diagnostics get
//! the fixed snapshot, stamped and signed as this agent; anything else fails with a reason.
//! The one place to change when the evidence reply's shape changes: evidence carries an
//! idempotency key and is acknowledged by the controller on the same stream.

use std::sync::Arc;
use std::time::Duration;

use deskside_proto::evidence::{self, Evidence};
use deskside_proto::findings;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, NoticeAck, SignedItem};
use deskside_proto::msg::diag::{ControllerLink, Snapshot};
use deskside_transport::clock::now_ms;
use deskside_transport::framed;
use sha2::{Digest, Sha256};

/// As the real agent's link: a request frame must arrive whole within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// As the real agent's link: how long the controller may take to store a reply's evidence.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Who this simulated agent is, for what it sends.
#[derive(Debug)]
pub struct Identity {
    pub hostname: String,
    /// The agent's own private key (PEM) that signs its evidence.
    pub key_pem: String,
}

/// Reads one request from the controller's stream and sends the one reply.
pub async fn serve_stream(
    fixed: &Arc<Snapshot>,
    me: &Identity,
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let reply = match framed::recv_within::<AgentRequest>(&mut recv, REQUEST_TIMEOUT).await {
        Ok(req) => {
            let link = ControllerLink {
                address: conn.remote_address().to_string(),
                rtt_ms: conn.rtt().as_secs_f64() * 1000.0,
            };
            answer(fixed, me, &req, link)
        }
        Err(e) => AgentReply::Failed {
            reason: format!("the agent could not read the request: {e}"),
        },
    };
    let evidence = matches!(reply, AgentReply::Snapshot(_));
    // A controller that went away loses only this reply.
    let sent = framed::send(&mut send, &reply).await.is_ok();
    let _ = send.finish();
    if evidence && sent {
        // The controller acknowledges evidence on this stream once it is stored (a real
        // agent then drops it from its spool; a simulated one has no spool to clear).
        let _ = framed::recv_within::<NoticeAck>(&mut recv, RECEIPT_TIMEOUT).await;
    }
}

/// The reply to `req`: a snapshot for diagnostics (this host's name, taken now),
/// `Failed` for everything a simulated agent does not do.
pub fn answer(
    fixed: &Snapshot,
    me: &Identity,
    req: &AgentRequest,
    link: ControllerLink,
) -> AgentReply {
    match req {
        AgentRequest::Diagnostics { .. } => match seal(fixed, me, link) {
            Ok(item) => AgentReply::Snapshot(Box::new(item)),
            Err(reason) => AgentReply::Failed { reason },
        },
        other => AgentReply::Failed {
            reason: format!(
                "a simulated agent only serves diagnostics, not {:?}",
                other.scope()
            ),
        },
    }
}

/// Serialises and signs the snapshot the way the real agent's `serve` does (no
/// redaction rules: the default policy has none switched on).
fn seal(fixed: &Snapshot, me: &Identity, link: ControllerLink) -> Result<SignedItem, String> {
    let mut snapshot = fixed.clone();
    snapshot.host.hostname.clone_from(&me.hostname);
    snapshot.collected_at_ms = now_ms();
    snapshot.network.controller = Some(link);
    snapshot.findings = findings::evaluate(&snapshot);
    let value = evidence::to_value(&snapshot).map_err(|e| e.to_string())?;
    let bytes = evidence::seal_value(Snapshot::KIND, &value).map_err(|e| e.to_string())?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let signature = deskside_transport::pki::sign_evidence(&me.key_pem, &digest)
        .map_err(|e| format!("signing snapshot: {e}"))?;
    Ok(SignedItem {
        key: deskside_agent::spool::new_key(),
        kind: Snapshot::KIND,
        bytes,
        signature,
        redaction: Vec::new(),
    })
}
