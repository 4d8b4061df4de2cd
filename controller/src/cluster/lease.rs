//! Work that must happen once in the cluster (the ticketing outbox, housekeeping) runs on
//! the node holding its lease: each pass first takes or renews the lease in the store,
//! and does the work only if this node holds it. A node that dies stops renewing; another
//! takes the lease over at its first pass after the term ends.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now_secs;
use crate::store::Store;

/// A lease lasts this many passes: a holder that misses two renewals in a row (a long
/// pause, a slow database) keeps its work; one that misses three has lost it.
pub const LEASE_TERMS: u32 = 3;

/// The term of a lease renewed every `every`: `LEASE_TERMS` passes, at least 3 s.
pub fn lease_ttl(every: Duration) -> Duration {
    every
        .saturating_mul(LEASE_TERMS)
        .max(Duration::from_secs(3))
}

/// The outbox's term with its default pass (`server::OUTBOX_POLL`, 5 s): after its
/// holder dies, another node syncs within this plus one pass.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// Work that runs on one node at a time: a closed set, also each lease's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Pushing tickets to the external ticket system (`crate::outbox`).
    Outbox,
    /// Forgetting expired support codes.
    Housekeeping,
}

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Work::Outbox => "outbox",
            Work::Housekeeping => "housekeeping",
        }
    }
}

/// Runs `pass` every `every` while `holder` (this node) holds `work`'s lease, until
/// `cancel`; then gives the lease up so another node takes over at once.
pub fn spawn_leased<F, Fut>(
    store: Store,
    work: Work,
    holder: String,
    every: Duration,
    cancel: CancellationToken,
    mut pass: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let ttl = lease_ttl(every).as_secs();
    tokio::spawn(async move {
        let mut holding = false;
        loop {
            let name = work.name();
            let who = holder.clone();
            match store
                .run(move |db| db.lease_take(name, &who, now_secs(), ttl))
                .await
            {
                Ok(true) => {
                    if !holding {
                        info!(work = name, node = %holder, "this node does this work now");
                    }
                    holding = true;
                    pass().await;
                }
                Ok(false) => {
                    if holding {
                        info!(work = name, node = %holder, "another node does this work now");
                    }
                    holding = false;
                }
                // Without the store no node can renew; the work waits for it either way.
                Err(e) => warn!(work = name, error = %e, "cannot take or renew the lease"),
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        if holding {
            let name = work.name();
            if let Err(e) = store.run(move |db| db.lease_release(name, &holder)).await {
                warn!(work = name, error = %e, "lease not given up; another node takes it when it ends");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(
        store: &Store,
        node: &str,
        cancel: &CancellationToken,
    ) -> (Arc<AtomicUsize>, JoinHandle<()>) {
        let passes = Arc::new(AtomicUsize::new(0));
        let counted = passes.clone();
        let task = spawn_leased(
            store.clone(),
            Work::Housekeeping,
            node.to_owned(),
            Duration::from_millis(20),
            cancel.clone(),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async {}
            },
        );
        (passes, task)
    }

    #[tokio::test]
    async fn when_the_holder_dies_another_node_takes_over_after_its_term() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("deskside.db");
        let (a_store, b_store) = (Store::open(&path)?, Store::open(&path)?);
        let (a_cancel, b_cancel) = (CancellationToken::new(), CancellationToken::new());
        let (a_passes, a_task) = counting(&a_store, "ctl-a", &a_cancel);
        while a_passes.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // ctl-a dies: no more renewals, and no clean release.
        a_task.abort();
        let _ = a_task.await;
        let (_, until) = b_store
            .run(|db| db.lease_holder("housekeeping"))
            .await?
            .ok_or_else(|| anyhow::anyhow!("ctl-a held no lease"))?;
        let (b_passes, b_task) = counting(&b_store, "ctl-b", &b_cancel);
        let start = std::time::Instant::now();
        while b_passes.load(Ordering::SeqCst) == 0 {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "ctl-b never took the work over"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not before ctl-a's term was over.
        assert!(
            now_secs() > until,
            "taken at {} before the term ended at {until}",
            now_secs()
        );
        b_cancel.cancel();
        b_task.await?;
        Ok(())
    }

    #[test]
    fn the_term_is_three_passes_and_never_under_three_seconds() {
        assert_eq!(lease_ttl(Duration::from_secs(5)), LEASE_TTL);
        assert_eq!(lease_ttl(Duration::from_millis(20)), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn only_the_holder_works_and_a_clean_stop_hands_the_work_over() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("deskside.db");
        // Two nodes, each with its own handle on one database.
        let (a_store, b_store) = (Store::open(&path)?, Store::open(&path)?);
        let (a_cancel, b_cancel) = (CancellationToken::new(), CancellationToken::new());
        let (a_passes, a_task) = counting(&a_store, "ctl-a", &a_cancel);
        while a_passes.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (b_passes, b_task) = counting(&b_store, "ctl-b", &b_cancel);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(b_passes.load(Ordering::SeqCst), 0, "ctl-b must wait");
        assert!(a_passes.load(Ordering::SeqCst) > 1, "ctl-a keeps working");
        a_cancel.cancel();
        a_task.await?;
        let held = b_store.run(|db| db.lease_holder("housekeeping")).await?;
        // Given up: free, or already ctl-b's.
        assert!(
            held.as_ref().is_none_or(|(holder, _)| holder == "ctl-b"),
            "{held:?}"
        );
        while b_passes.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        b_cancel.cancel();
        b_task.await?;
        Ok(())
    }
}
