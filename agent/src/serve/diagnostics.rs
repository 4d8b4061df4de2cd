//! A diagnostics request: take a snapshot, compute its findings, sign both and keep
//! them until the controller has them.

use deskside_proto::findings;
use deskside_proto::msg::agent::{AgentReply, Requester};
use deskside_proto::msg::diag::ControllerLink;
use deskside_proto::msg::session::Scope;
use sha2::{Digest, Sha256};

use super::{AgentCtx, failed, keep_and_audit, refused};

pub(super) async fn diagnostics(
    ctx: &AgentCtx,
    who: &Requester,
    link: ControllerLink,
) -> AgentReply {
    let scope = Scope::Diagnostics.as_str();
    if let Err(refusal) = ctx.sessions.authorize(who, Scope::Diagnostics) {
        return refused(ctx, who, scope, refusal);
    }
    if let Err(full) = ctx.deliveries.room() {
        return failed(ctx, who, scope, full.to_string());
    }
    ctx.sessions.set_activity(Some(format!(
        "{} is reading this machine's diagnostics",
        who.technician
    )));
    let mut snapshot = crate::diag::snapshot().await;
    ctx.sessions.set_activity(None);
    snapshot.network.controller = Some(link);
    snapshot.findings = findings::evaluate(&snapshot);
    let sealed = ctx.seal(&snapshot);
    let item = match sealed {
        Ok(item) => item,
        Err(e) => {
            return AgentReply::Failed {
                reason: e.to_string(),
            };
        }
    };
    let detail = format!(
        "snapshot with {} findings sent, key {}, sha256:{}{}",
        snapshot.findings.len(),
        item.key,
        hex::encode(Sha256::digest(&item.bytes)),
        if item.redaction.is_empty() {
            String::new()
        } else {
            format!(", redacted: {}", item.redaction.join(","))
        }
    );
    match keep_and_audit(ctx, who, scope, &item, "served", detail).await {
        Ok(()) => AgentReply::Snapshot(Box::new(item)),
        Err(reason) => AgentReply::Failed { reason },
    }
}
