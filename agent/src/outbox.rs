//! Notices for the controller (support codes, sessions ended or decided), queued here and
//! delivered in order whenever the link is up; each is removed only once acknowledged.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use deskside_proto::msg::agent::{AgentNotice, NoticeAck};
use deskside_transport::{TransportError, framed};
use tokio::sync::Notify;
use tracing::{debug, warn};

/// Notices kept while offline; past this the oldest go (they are informational — the
/// agent's own audit log keeps the full record).
pub const MAX_QUEUED_NOTICES: usize = 1000;
/// The controller acknowledges after a durable write; this bounds a stuck one.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<AgentNotice>>,
    notify: Notify,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<AgentNotice>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, notice: AgentNotice) {
        let mut q = self.lock();
        if q.len() >= MAX_QUEUED_NOTICES {
            warn!("notice queue full; dropping the oldest");
            q.pop_front();
        }
        q.push_back(notice);
        drop(q);
        self.notify.notify_one();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Delivers queued notices over `conn` until it fails; returns the error.
    pub async fn pump(&self, conn: &quinn::Connection) -> TransportError {
        loop {
            let notified = self.notify.notified();
            let next = self.lock().front().cloned();
            let Some(notice) = next else {
                notified.await;
                continue;
            };
            match framed::request::<_, NoticeAck>(conn, &notice, ACK_TIMEOUT).await {
                Ok(ack) => {
                    if let NoticeAck::Rejected { reason } = ack {
                        warn!(%reason, "controller rejected a notice; dropping it");
                    }
                    debug!("notice delivered");
                    let mut q = self.lock();
                    if q.front() == Some(&notice) {
                        q.pop_front();
                    }
                }
                Err(e) => return e,
            }
        }
    }
}
