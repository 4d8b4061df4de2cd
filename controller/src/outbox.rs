//! The outbox worker: pushes queued tickets to the external ticket system and retries
//! failures with jittered exponential backoff. A job stays in the database until it
//! succeeds — a ticket system that is down for a week gets the push when it is back.
//!
//! Escalation enqueues (`enqueue_sync`); [`spawn_worker`] runs due jobs every `poll`;
//! `ticket show` reads the ticket's `sync_state`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deskside_proto::msg::identity::Tier;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::adapters::{SyncJob, SyncOutcome, TicketSystem};
use crate::clock::now_secs;
use crate::store::{Store, StoreError};

/// The one job kind today: push a ticket and its bundle.
pub const KIND_SYNC: &str = "sync";

/// First retry after 15–30 s (jittered), doubling per failure…
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);
/// …up to 15 minutes: a help desk notices a sync late by at most that once RT is back.
pub const BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);

/// How long a claimed job is hidden from other workers. Longer than a sync takes with
/// default timeouts (a handful of requests, 30 s each); a worker that died mid-job
/// leaves it due again after this.
pub const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// Jobs one pass runs at most, so shutdown is never far away.
const MAX_JOBS_PER_PASS: usize = 100;

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxJob {
    pub id: u64,
    pub ticket: u64,
    pub kind: String,
    /// JSON; for `sync` a [`SyncPayload`].
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub next_attempt_at: u64,
    pub last_error: Option<String>,
    pub created_at: u64,
    pub done_at: Option<u64>,
}

/// What a `sync` job pushes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPayload {
    pub tier: Tier,
    pub note: String,
    pub bundle_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot queue the sync: {0}")]
    Payload(String),
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub synced: usize,
    pub failed: usize,
}

/// Queues a push of `ticket` with the bundle in `payload.bundle_dir`; returns the job id.
pub async fn enqueue_sync(
    store: &Store,
    ticket: u64,
    payload: &SyncPayload,
) -> Result<u64, OutboxError> {
    let json = serde_json::to_string(payload).map_err(|e| {
        OutboxError::Payload(format!(
            "bundle directory {}: {e}",
            payload.bundle_dir.display()
        ))
    })?;
    Ok(store
        .run(move |db| db.outbox_enqueue(ticket, KIND_SYNC, &json, now_secs()))
        .await?)
}

/// Delay before the next attempt after `failures` failed ones; `unit` in `[0, 1)`
/// picks a point in the jitter window (the upper half of the exponential step), so
/// controllers that failed together do not retry together.
pub fn backoff(failures: u32, unit: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let step = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_CAP);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = step / 2;
    (half + half.mul_f64(unit)).max(Duration::from_secs(1))
}

/// Runs every due job once, now. The worker calls this each poll; tests call it directly.
pub async fn run_due_now(
    store: &Store,
    system: &Arc<dyn TicketSystem>,
) -> Result<RunSummary, StoreError> {
    run_pass(store, system, None).await
}

/// Starts the worker: a pass at once, then one every `poll`, until `cancel` — on the
/// node `node` only while it holds the outbox's lease, so one node of a cluster syncs.
/// (Each job is also claimed on its own, so a pass outliving a lost lease syncs no job
/// twice.)
pub fn spawn_worker(
    store: Store,
    system: Arc<dyn TicketSystem>,
    cancel: CancellationToken,
    poll: Duration,
    node: String,
) -> JoinHandle<()> {
    let (pass_store, pass_cancel) = (store.clone(), cancel.clone());
    crate::cluster::spawn_leased(
        store,
        crate::cluster::Work::Outbox,
        node,
        poll,
        cancel,
        move || {
            let (store, system, cancel) = (pass_store.clone(), system.clone(), pass_cancel.clone());
            async move {
                match run_pass(&store, &system, Some(&cancel)).await {
                    Ok(s) if s.synced + s.failed > 0 => {
                        tracing::info!(synced = s.synced, failed = s.failed, "outbox pass");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("outbox: {e}"),
                }
            }
        },
    )
}

async fn run_pass(
    store: &Store,
    system: &Arc<dyn TicketSystem>,
    cancel: Option<&CancellationToken>,
) -> Result<RunSummary, StoreError> {
    let mut summary = RunSummary::default();
    for _ in 0..MAX_JOBS_PER_PASS {
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            break;
        }
        // One at a time, so each lease starts when its job does.
        let lease = CLAIM_LEASE.as_secs();
        let Some(job) = store
            .run(move |db| db.outbox_claim_due(now_secs(), lease, 1))
            .await?
            .pop()
        else {
            break;
        };
        match run_job(store, system, &job).await {
            Ok(outcome) => {
                let SyncOutcome {
                    external_ref,
                    detail,
                    link,
                } = outcome;
                tracing::info!(ticket = job.ticket, %external_ref, "synced: {detail}");
                let id = job.id;
                store
                    .run(move |db| {
                        db.outbox_done(id, &external_ref, link.as_deref(), &detail, now_secs())
                    })
                    .await?;
                summary.synced += 1;
            }
            Err((error, created_ref)) => {
                let delay = backoff(job.attempts.saturating_add(1), rand::random::<f64>());
                let next = now_secs().saturating_add(delay.as_secs());
                tracing::warn!(
                    ticket = job.ticket,
                    attempt = job.attempts + 1,
                    "sync failed, retrying in {}s: {error}",
                    delay.as_secs()
                );
                let id = job.id;
                store
                    .run(move |db| db.outbox_failed(id, &error, next, created_ref.as_deref()))
                    .await?;
                summary.failed += 1;
            }
        }
    }
    Ok(summary)
}

/// Runs one job; on failure returns the message and any external ticket it created.
async fn run_job(
    store: &Store,
    system: &Arc<dyn TicketSystem>,
    job: &OutboxJob,
) -> Result<SyncOutcome, (String, Option<String>)> {
    if job.kind != KIND_SYNC {
        return Err((
            format!(
                "unknown outbox job kind {:?}; this controller only runs {KIND_SYNC:?} (was the \
                 database written by a newer deskside?)",
                job.kind
            ),
            None,
        ));
    }
    let payload: SyncPayload = serde_json::from_str(&job.payload).map_err(|e| {
        (
            format!("outbox job {} has a bad payload: {e}", job.id),
            None,
        )
    })?;
    let number = job.ticket;
    // The ticket as it is now: a previous attempt may have linked it.
    let ticket = store
        .run(move |db| db.ticket(number))
        .await
        .map_err(|e| (e.to_string(), None))?;
    let sync = SyncJob {
        ticket,
        tier: payload.tier,
        note: payload.note,
        bundle_dir: payload.bundle_dir,
        sync_id: job.id,
    };
    let system = system.clone();
    let result = tokio::task::spawn_blocking(move || system.sync(&sync))
        .await
        .map_err(|e| (format!("the ticket system adapter stopped: {e}"), None))?;
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) => Err((e.to_string(), e.created_ref().map(str::to_owned))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use deskside_proto::msg::identity::Tier;

    use super::*;
    use crate::adapters::AdapterError;
    use crate::store::NewTicket;

    #[test]
    fn backoff_doubles_with_jitter_and_caps_at_15_minutes() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(15));
        assert_eq!(backoff(1, 0.999_999).as_secs(), 29);
        assert_eq!(backoff(2, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(90));
        for failures in [6, 7, 20, u32::MAX] {
            for unit in [0.0, 0.5, 0.999, f64::NAN, 7.0] {
                let d = backoff(failures, unit);
                assert!(d <= BACKOFF_CAP, "{failures} {unit} {d:?}");
                assert!(d >= BACKOFF_CAP / 2, "{failures} {unit} {d:?}");
            }
        }
    }

    /// Fails `fail_first` times, then succeeds; records the refs it was given.
    #[derive(Debug)]
    struct Flaky {
        fail_first: Mutex<u32>,
        seen: Mutex<Vec<Option<String>>>,
    }

    impl TicketSystem for Flaky {
        fn sync(&self, job: &SyncJob) -> Result<SyncOutcome, AdapterError> {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(job.ticket.external_ref.clone());
            }
            let mut left = self
                .fail_first
                .lock()
                .map_err(|_| AdapterError::Verify("poisoned".into()))?;
            if *left > 0 {
                *left -= 1;
                return Err(AdapterError::AfterCreate {
                    external_ref: "rt:5".into(),
                    source: Box::new(AdapterError::Verify("queue did not change".into())),
                });
            }
            Ok(SyncOutcome {
                external_ref: "rt:5".into(),
                detail: "ok".into(),
                link: None,
            })
        }
    }

    #[tokio::test]
    async fn outbox_retries_until_synced_and_reuses_the_created_ticket() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("t.db"))?;
        let n = store
            .run(|db| {
                db.create_ticket(&NewTicket {
                    title: "vpn",
                    requester: "pat",
                    priority: "normal",
                    agent: None,
                    by: "alice",
                    tier: Tier::L1,
                })
            })
            .await?;
        let flaky = Arc::new(Flaky {
            fail_first: Mutex::new(1),
            seen: Mutex::new(Vec::new()),
        });
        let system: Arc<dyn TicketSystem> = flaky.clone();
        let payload = SyncPayload {
            tier: Tier::L2,
            note: "needs L2".into(),
            bundle_dir: dir.path().join("bundle"),
        };
        enqueue_sync(&store, n, &payload).await?;

        let first = run_due_now(&store, &system).await?;
        assert_eq!(
            first,
            RunSummary {
                synced: 0,
                failed: 1
            }
        );
        let ticket = store.run(move |db| db.ticket(n)).await?;
        assert!(
            ticket
                .sync_state
                .unwrap_or_default()
                .starts_with("retrying (attempt 1)")
        );
        assert_eq!(ticket.external_ref.as_deref(), Some("rt:5"));
        // Not due yet: backoff.
        assert_eq!(run_due_now(&store, &system).await?, RunSummary::default());

        store
            .run(move |db| db.outbox_retry_now(Some(n), now_secs()))
            .await?;
        assert_eq!(
            run_due_now(&store, &system).await?,
            RunSummary {
                synced: 1,
                failed: 0
            }
        );
        let seen = flaky
            .seen
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        assert_eq!(seen, vec![None, Some("rt:5".into())]);
        let timeline = store.run(move |db| db.timeline(n)).await?;
        assert!(timeline.iter().any(|e| e.kind == "synced"));
        Ok(())
    }

    #[tokio::test]
    async fn outbox_worker_stops_on_cancel() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("t.db"))?;
        let system: Arc<dyn TicketSystem> = Arc::new(Flaky {
            fail_first: Mutex::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let cancel = CancellationToken::new();
        let worker = spawn_worker(
            store,
            system,
            cancel.clone(),
            Duration::from_secs(3600),
            "ctl-a".into(),
        );
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), worker).await??;
        Ok(())
    }
}
