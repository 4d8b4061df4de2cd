//! `deskside config check --reach`: logs in to RT and looks up each tier's queue, so a
//! missing queue or a user without rights shows before the first escalation.

use std::fmt;

use deskside_proto::msg::identity::Tier;

use super::RtClient;
use crate::adapters::config::RtConfig;

/// What the check found for one tier's queue.
#[derive(Debug)]
pub struct QueueCheck {
    pub tier: Tier,
    pub queue: String,
    pub outcome: QueueOutcome,
}

#[derive(Debug)]
pub enum QueueOutcome {
    /// RT shows the queue to the configured user.
    Found { id: String },
    /// 404: no such queue, or the user may not see it (SeeQueue).
    Missing,
    /// The request failed: RT down, wrong password, …
    Failed(String),
}

impl QueueCheck {
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, QueueOutcome::Found { .. })
    }
}

impl fmt::Display for QueueCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tier, queue) = (self.tier, &self.queue);
        match &self.outcome {
            QueueOutcome::Found { id } => write!(f, "{tier} queue {queue:?}: ok (RT queue {id})"),
            QueueOutcome::Missing => write!(
                f,
                "{tier} queue {queue:?}: MISSING: RT has no such queue, or the RT user may not \
                 see it (SeeQueue); create it in RT or fix ticketing.rt.queues.{tier}"
            ),
            QueueOutcome::Failed(e) => write!(f, "{tier} queue {queue:?}: FAILED: {e}"),
        }
    }
}

/// Looks up each tier's queue once (blocking; one request per distinct queue).
pub fn check_queues(config: &RtConfig) -> Vec<QueueCheck> {
    let client = RtClient::new(config);
    [Tier::L1, Tier::L2, Tier::L3]
        .into_iter()
        .map(|tier| {
            let queue = config.queues.for_tier(tier).to_owned();
            let outcome = match client.queue(&queue) {
                Ok(Some(q)) => QueueOutcome::Found { id: q.id },
                Ok(None) => QueueOutcome::Missing,
                Err(e) => QueueOutcome::Failed(e.to_string()),
            };
            QueueCheck {
                tier,
                queue,
                outcome,
            }
        })
        .collect()
}
