//! "Ask for help": the user's sentence, a fresh snapshot and the self-fix runs since the
//! last ask go to the controller as one notice, spooled first so nothing is lost. Sent at
//! once when the link is up (the user sees the ticket number); otherwise the spool
//! delivers it when the link returns.

use deskside_proto::findings;
use deskside_proto::limits::{MAX_EVIDENCE_BYTES, MAX_SNAPSHOT_BYTES};
use deskside_proto::msg::agent::{
    AgentNotice, Delivery, HelpAsk, MAX_ASK_RUNS, MAX_ASK_TEXT_BYTES, NoticeAck,
};
use deskside_proto::msg::identity::Tier;

use crate::serve::AgentCtx;

use super::{Asked, SCOPE, actor, kept};

/// Bytes of self-fix records one ask may carry: what a delivery holds beside the largest
/// snapshot.
const RUNS_BUDGET: usize = (MAX_EVIDENCE_BYTES - MAX_SNAPSHOT_BYTES) as usize;

/// The user's words, checked: one to [`MAX_ASK_TEXT_BYTES`] bytes of printable text.
pub fn check_text(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("say in a sentence what is wrong, e.g. deskside-agent ask \"the printer prints nothing\"".into());
    }
    if text.len() > MAX_ASK_TEXT_BYTES {
        return Err(format!(
            "your text is {} bytes; keep it under {MAX_ASK_TEXT_BYTES} (one or two sentences) — the help desk will ask for more",
            text.len()
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err("your text contains control characters; write plain text".into());
    }
    Ok(text.to_owned())
}

pub(crate) async fn ask(ctx: &AgentCtx, user: &str, text: &str) -> Result<Asked, String> {
    let text = check_text(text)?;
    ctx.deliveries.room().map_err(|e| e.to_string())?;
    let mut snapshot = crate::diag::snapshot().await;
    snapshot.findings = findings::evaluate(&snapshot);
    let snapshot = ctx
        .seal(&snapshot)
        .map_err(|e| format!("the snapshot for your request could not be made: {e}"))?;
    let runs = kept::latest(&ctx.state, MAX_ASK_RUNS, RUNS_BUDGET);
    let files: Vec<_> = runs.iter().map(|(f, _)| f.clone()).collect();
    let delivery = Delivery {
        key: crate::spool::new_key(),
        notice: AgentNotice::AskForHelp(Box::new(HelpAsk {
            user: user.to_owned(),
            text: text.clone(),
            snapshot,
            runs: runs.into_iter().map(|(_, item)| item).collect(),
        })),
    };
    let who = actor(user, Tier::L1, 0);
    let claim = ctx
        .deliveries
        .keep_notice(&delivery)
        .await
        .map_err(|e| format!("your request could not be saved: {e}"))?;
    ctx.audit(
        &who,
        SCOPE,
        "asked",
        format!(
            "asked for help ({} self-fix runs attached, key {}): {text}",
            files.len(),
            delivery.key
        ),
    )?;
    match ctx.deliveries.send_now(&delivery).await {
        Ok(ack @ (NoticeAck::Opened { .. } | NoticeAck::Recorded)) => {
            claim.settle(&ack).await;
            kept::remove(&files);
            let ticket = match ack {
                NoticeAck::Opened { ticket } => Some(ticket),
                _ => None,
            };
            let message = match ticket {
                Some(n) => format!(
                    "Your help desk has your request as ticket #{n}. Quote this number when they call, or when you call them."
                ),
                None => "Your help desk has your request.".to_owned(),
            };
            let _ = ctx.audit(
                &actor(user, Tier::L1, ticket.unwrap_or(0)),
                SCOPE,
                "opened",
                message.clone(),
            );
            Ok(Asked { ticket, message })
        }
        Ok(NoticeAck::Rejected { reason }) => {
            let said = format!("the help desk did not take your request: {reason}");
            let _ = ctx.audit(&who, SCOPE, "refused", said.clone());
            claim.settle(&NoticeAck::Rejected { reason }).await;
            Err(said)
        }
        // Not connected, or the controller could not store it now: the spool has it.
        Ok(_) | Err(_) => {
            drop(claim);
            kept::remove(&files);
            Ok(Asked {
                ticket: None,
                message: "Your request is saved on this computer and will reach your help desk as soon as it can connect; you do not need to ask again.".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_text_is_trimmed_bounded_and_plain() {
        assert_eq!(
            check_text("  printer is stuck \n").as_deref(),
            Ok("printer is stuck")
        );
        assert!(check_text("   ").is_err());
        assert!(check_text(&"x".repeat(MAX_ASK_TEXT_BYTES + 1)).is_err());
        assert!(check_text("bell\u{7}").is_err());
    }
}
