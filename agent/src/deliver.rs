//! What the agent must tell the controller — support codes, sessions that ended, and
//! evidence whose direct delivery was not acknowledged — kept in the on-disk
//! [`Spool`] and delivered in order whenever the link is up. Each item is removed only
//! once the controller acknowledges it (after its own durable commit).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deskside_proto::evidence::EvidenceKind;
use deskside_proto::msg::agent::{AgentNotice, Delivery, NoticeAck, Requester, SignedItem};
use deskside_transport::{TransportError, framed};
use tracing::{debug, info, warn};

use crate::spool::{Spool, SpoolError, new_key};

/// The controller acknowledges after a durable write; this bounds a stuck one.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// After the controller asks for a retry (its store failed), wait this long.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// The agent's deliveries to the controller: the spool that holds them and the pump that
/// sends them in order while the link is up.
#[derive(Debug)]
pub struct Deliveries {
    spool: Arc<Spool>,
    /// Made durable before an item leaves the spool (see [`crate::audit::sync`]).
    audit_log: Arc<PathBuf>,
    /// The connection the pump last delivered over, for a notice the user waits on
    /// (asking for help); a closed one fails at once and the pump delivers later.
    current: std::sync::Mutex<Option<quinn::Connection>>,
}

/// An item being delivered by one path; released to the pump if dropped undelivered.
#[derive(Debug)]
pub struct Claim {
    spool: Arc<Spool>,
    audit_log: Arc<PathBuf>,
    key: String,
    settled: bool,
}

impl Claim {
    /// A claim on `key`, which the spool already holds as claimed.
    fn new(spool: Arc<Spool>, audit_log: Arc<PathBuf>, key: String) -> Claim {
        Claim {
            spool,
            audit_log,
            key,
            settled: false,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Keeps the item claimed for whoever sends the reply carrying it: the stream's
    /// writer adopts it with [`Deliveries::adopt`] (and releases it if the reply fails).
    pub fn pass_on(mut self) {
        self.settled = true;
    }

    /// Takes the item back out of the spool: it will not be sent.
    pub async fn discard(mut self) {
        if let Err(e) = self.remove().await {
            warn!(error = %e, "discarded item not removed from the spool");
        }
        self.settled = true;
    }

    /// Removes the item from the spool, off the reactor, once the audit log is durable:
    /// its entry for the item may have been written unsynced.
    async fn remove(&self) -> Result<(), String> {
        let (spool, audit_log, key) =
            (self.spool.clone(), self.audit_log.clone(), self.key.clone());
        let removed = tokio::task::spawn_blocking(move || {
            crate::audit::sync(&audit_log).map_err(|e| format!("{e:#}"))?;
            spool.remove(&key).map_err(|e| e.to_string())
        });
        match removed.await {
            Ok(removed) => removed,
            Err(e) => Err(format!("spool removal did not run: {e}")),
        }
    }

    /// The controller answered: `Recorded` or `Rejected` end the item's life here;
    /// `Retry` leaves it for the pump.
    pub async fn settle(mut self, ack: &NoticeAck) {
        match ack {
            NoticeAck::Recorded => debug!(key = %self.key, "delivered"),
            NoticeAck::Opened { ticket } => {
                info!(key = %self.key, ticket, "the controller opened a ticket")
            }
            NoticeAck::Rejected { reason } => {
                warn!(key = %self.key, %reason, "the controller refused an item for good; dropping it");
            }
            NoticeAck::Retry { reason } => {
                info!(key = %self.key, %reason, "the controller asked to retry later");
                return;
            }
            NoticeAck::Renewed { .. } => {
                warn!(key = %self.key, "the controller answered a delivery with a certificate; dropping the item");
            }
        }
        match self.remove().await {
            Ok(()) => self.settled = true,
            Err(e) => warn!(error = %e, "delivered item not removed from the spool"),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.settled {
            self.spool.release(&self.key);
        }
    }
}

impl Deliveries {
    /// The spool in `dir`; `audit_log` is synced before any item leaves it.
    pub fn open(dir: &Path, audit_log: PathBuf) -> Result<Deliveries, SpoolError> {
        Ok(Deliveries {
            spool: Arc::new(Spool::open(dir)?),
            audit_log: Arc::new(audit_log),
            current: std::sync::Mutex::new(None),
        })
    }

    /// Queues a small notice. Blocks for one small synced write.
    pub fn push(&self, notice: AgentNotice) {
        let delivery = Delivery {
            key: new_key(),
            notice,
        };
        if let Err(e) = self.spool.put(&delivery, false) {
            warn!(error = %e, "notice not queued for the controller");
        }
    }

    /// `Err` with the reason when no further evidence can be kept.
    pub fn room(&self) -> Result<(), SpoolError> {
        self.spool.room()
    }

    /// Items and bytes waiting for the controller.
    pub fn usage(&self) -> (usize, u64) {
        self.spool.usage()
    }

    /// Evidence waiting in the spool: (key, who asked, kind). Blocking.
    pub fn waiting_evidence(&self) -> Vec<(String, Requester, EvidenceKind)> {
        self.spool
            .peek_all()
            .into_iter()
            .filter_map(|d| match d.notice {
                AgentNotice::Evidence { requester, item } => Some((d.key, requester, item.kind)),
                _ => None,
            })
            .collect()
    }

    /// Spools `item` durably before it is sent as a reply; the returned claim keeps the
    /// pump off it until the reply's acknowledgement settles it (or it is dropped).
    pub async fn keep(&self, requester: &Requester, item: &SignedItem) -> Result<Claim, String> {
        let delivery = Delivery {
            key: item.key.clone(),
            notice: AgentNotice::Evidence {
                requester: requester.clone(),
                item: Box::new(item.clone()),
            },
        };
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.put(&delivery, true))
            .await
            .map_err(|e| format!("the spool writer stopped: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok(self.claim(item.key.clone()))
    }

    fn claim(&self, key: String) -> Claim {
        Claim::new(self.spool.clone(), self.audit_log.clone(), key)
    }

    /// Re-takes the claim on `key` that [`Deliveries::keep`] made, for the path delivering it.
    pub fn adopt(&self, key: &str) -> Claim {
        self.claim(key.to_owned())
    }

    /// Notes in the local audit log that the controller refused `delivery` for good, so
    /// the user can see what was dropped and why (before the spool lets go of it).
    async fn audit_dropped(&self, delivery: &Delivery, reason: &str) {
        let (technician, tier, ticket, what) = match &delivery.notice {
            AgentNotice::Evidence { requester, item } => (
                requester.technician.clone(),
                requester.tier.to_string(),
                requester.ticket,
                format!("{} evidence", item.kind),
            ),
            AgentNotice::SessionEnded { grant, .. } => (
                grant.technician.clone(),
                grant.tier.to_string(),
                grant.ticket,
                format!("notice that session {} ended", grant.id),
            ),
            AgentNotice::SupportCode { .. } => {
                (String::new(), String::new(), 0, "support code".into())
            }
            AgentNotice::Renew { .. } => (String::new(), String::new(), 0, "renewal".into()),
            AgentNotice::AskForHelp(ask) => (
                ask.user.clone(),
                String::new(),
                0,
                "a request for help".into(),
            ),
        };
        let entry = crate::audit::AuditEntry {
            at_secs: crate::now_secs(),
            technician,
            tier,
            ticket,
            scope: "delivery".into(),
            outcome: "dropped".into(),
            detail: format!(
                "the controller refused {what} (key {}) for good: {reason}",
                delivery.key
            ),
        };
        let log = self.audit_log.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::audit::append_unsynced(&log, &entry)).await;
        if !matches!(written, Ok(Ok(()))) {
            warn!(key = %delivery.key, "could not note the dropped item in the audit log");
        }
    }

    /// Spools `delivery` durably and claims it for the caller, who sends it at once with
    /// [`Deliveries::send_now`]; dropping the claim undelivered hands it to the pump.
    pub async fn keep_notice(&self, delivery: &Delivery) -> Result<Claim, String> {
        let (spool, d) = (self.spool.clone(), delivery.clone());
        tokio::task::spawn_blocking(move || spool.put(&d, true))
            .await
            .map_err(|e| format!("the spool writer stopped: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok(self.claim(delivery.key.clone()))
    }

    /// Sends `delivery` now over the current connection and returns the controller's
    /// answer; `Err` when there is no connection or it failed (the spool still has it).
    pub async fn send_now(&self, delivery: &Delivery) -> Result<NoticeAck, String> {
        let conn = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| "the agent is not connected to the controller".to_owned())?;
        framed::request::<_, NoticeAck>(&conn, delivery, ACK_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }

    /// Notes in the local audit log the ticket a request for help, sent later by the
    /// pump, became: where `user` reads its number (`deskside-agent audit`).
    async fn audit_opened(&self, user: &str, ticket: u64) {
        let entry = crate::audit::AuditEntry {
            at_secs: crate::now_secs(),
            technician: format!("{user} (self-service)"),
            tier: String::new(),
            ticket,
            scope: "self-service".into(),
            outcome: "opened".into(),
            detail: format!(
                "your saved request for help reached the help desk as ticket #{ticket}"
            ),
        };
        let log = self.audit_log.clone();
        let written =
            tokio::task::spawn_blocking(move || crate::audit::append_unsynced(&log, &entry)).await;
        if !matches!(written, Ok(Ok(()))) {
            warn!(ticket, "could not note the opened ticket in the audit log");
        }
    }

    /// Delivers spooled items over `conn` until it fails; returns the error.
    pub async fn pump(&self, conn: &quinn::Connection) -> TransportError {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        loop {
            let changed = self.spool.changed();
            let (spool, audit_log) = (self.spool.clone(), self.audit_log.clone());
            // The claim is made where the item is claimed, on the blocking thread: if
            // this task is aborted (its connection ended) while waiting, tokio drops the
            // finished result, and with it the claim, which hands the item back. An item
            // read there but its claim made here stayed claimed until the agent restarted.
            let next = tokio::task::spawn_blocking(move || {
                spool.next().map(|delivery| {
                    let claim = Claim::new(spool.clone(), audit_log, delivery.key.clone());
                    (delivery, claim)
                })
            });
            let next = match next.await {
                Ok(next) => next,
                Err(e) => {
                    warn!(error = %e, "spool reader stopped");
                    None
                }
            };
            let Some((delivery, claim)) = next else {
                changed.await;
                continue;
            };
            match framed::request::<_, NoticeAck>(conn, &delivery, ACK_TIMEOUT).await {
                Ok(ack) => {
                    if let NoticeAck::Rejected { reason } = &ack {
                        self.audit_dropped(&delivery, reason).await;
                    }
                    if let (NoticeAck::Opened { ticket }, AgentNotice::AskForHelp(ask)) =
                        (&ack, &delivery.notice)
                    {
                        self.audit_opened(&ask.user, *ticket).await;
                    }
                    let retry = matches!(ack, NoticeAck::Retry { .. });
                    claim.settle(&ack).await;
                    if retry {
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                }
                // Dropping the claim hands the item back for the next connection.
                Err(e) => return e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_proto::msg::identity::Tier;

    #[tokio::test]
    async fn an_item_refused_for_good_is_noted_in_the_audit_log() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("audit.log");
        let deliveries = Deliveries::open(&dir.path().join("spool"), log.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let delivery = Delivery {
            key: "k1".into(),
            notice: AgentNotice::Evidence {
                requester: Requester {
                    technician: "alice".into(),
                    tier: Tier::L1,
                    ticket: 9,
                    request_key: "00".into(),
                },
                item: Box::new(SignedItem {
                    key: "k1".into(),
                    kind: EvidenceKind::Snapshot,
                    bytes: b"{}".to_vec(),
                    signature: Vec::new(),
                    redaction: Vec::new(),
                }),
            },
        };
        deliveries
            .audit_dropped(&delivery, "its request key was not issued to agent a1")
            .await;
        let (entries, _) = crate::audit::read(&log).unwrap_or_else(|e| panic!("{e:#}"));
        let [entry] = entries.as_slice() else {
            panic!("one entry expected: {entries:?}");
        };
        assert_eq!(
            (
                entry.ticket,
                entry.outcome.as_str(),
                entry.technician.as_str()
            ),
            (9, "dropped", "alice")
        );
        assert!(
            entry.detail.contains("snapshot evidence (key k1)")
                && entry.detail.contains("request key was not issued"),
            "{}",
            entry.detail
        );
    }
}
