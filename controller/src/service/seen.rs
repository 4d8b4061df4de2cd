//! Agent check-ins and disconnects, written in batches.
//!
//! After a controller restart thousands of agents check in within seconds. One synced
//! SQLite commit each capped that at about 240 per second, and every queued write also
//! held up the identity lookups of the connections behind it. Here each record goes to
//! one writer task that commits whatever has queued up meanwhile in one transaction
//! (group commit): one fsync per batch, however many agents it carries.
//!
//! A check-in waits for its batch to commit, so an agent is registered only after its
//! row is current, as before. Later sightings (deliveries, the disconnect) do not wait; [`Seen::flush`] writes what is
//! queued before the controller stops.

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::clock::now_secs;
use crate::store::{Sighting, Store, StoreError};

/// Records committed in one transaction at most.
const MAX_BATCH: usize = 1024;
/// Records waiting for the writer; senders wait beyond this (back-pressure).
const QUEUE: usize = 16 * 1024;

#[derive(Debug)]
enum Job {
    Record {
        sighting: Sighting,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    Flush(oneshot::Sender<()>),
}

/// Handle to the batching writer.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    tx: mpsc::Sender<Job>,
}

impl Seen {
    /// Starts the writer on `store`; it runs until every handle is dropped.
    pub fn start(store: Store) -> Seen {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, rx));
        Seen { tx }
    }

    /// Records a check-in and waits until it is committed.
    pub async fn check_in(
        &self,
        id: &str,
        hostname: &str,
        os: &str,
        kernel: &str,
        version: &str,
    ) -> Result<(), String> {
        let (done, committed) = oneshot::channel();
        let sighting = Sighting::CheckIn {
            id: id.to_owned(),
            hostname: hostname.to_owned(),
            os: os.to_owned(),
            kernel: kernel.to_owned(),
            version: version.to_owned(),
            at_secs: now_secs(),
        };
        self.submit(sighting, Some(done)).await?;
        committed
            .await
            .map_err(|_| "the check-in writer stopped".to_owned())?
    }

    /// Records that an agent was seen now (a delivery, its disconnect); does not wait
    /// for the commit.
    pub async fn touch(&self, id: &str) {
        let sighting = Sighting::Seen {
            id: id.to_owned(),
            at_secs: now_secs(),
        };
        if let Err(e) = self.submit(sighting, None).await {
            warn!(agent = id, error = %e, "recording when an agent was seen failed");
        }
    }

    /// Waits until everything queued before this call is committed (or failed).
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    async fn submit(
        &self,
        sighting: Sighting,
        done: Option<oneshot::Sender<Result<(), String>>>,
    ) -> Result<(), String> {
        self.tx
            .send(Job::Record { sighting, done })
            .await
            .map_err(|_| "the check-in writer stopped".to_owned())
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let mut sightings = Vec::with_capacity(jobs.len());
        let mut waiting = Vec::new();
        let mut flushes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Record { sighting, done } => {
                    sightings.push(sighting);
                    waiting.extend(done);
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        let outcome = if sightings.is_empty() {
            Ok(())
        } else {
            let count = sightings.len();
            store
                .run(move |db| db.record_sightings(&sightings))
                .await
                .map_err(|e: StoreError| {
                    warn!(count, error = %e, "recording agent check-ins failed");
                    e.to_string()
                })
        };
        for done in waiting {
            let _ = done.send(outcome.clone());
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_agents(
        n: usize,
    ) -> Result<(tempfile::TempDir, Store), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("db.sqlite"))?;
        store.blocking(|db| {
            for i in 0..n {
                db.insert_agent(&crate::store::NewAgent {
                    id: format!("agent-{i}"),
                    hostname: format!("old-{i}"),
                    os: "linux".into(),
                    cert_sha256: format!("{i:064x}"),
                    cert_pem: String::new(),
                    cert_not_after: u64::MAX / 2,
                })?;
            }
            Ok(())
        })?;
        Ok((dir, store))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_check_ins_at_once_are_all_committed() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = store_with_agents(300)?;
        let seen = Seen::start(store.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..300 {
            let seen = seen.clone();
            tasks.spawn(async move {
                seen.check_in(
                    &format!("agent-{i}"),
                    &format!("new-{i}"),
                    "os",
                    "kernel",
                    "1",
                )
                .await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let agents = store.run(|db| db.agents()).await?;
        assert_eq!(agents.len(), 300);
        for a in &agents {
            let n = a.id.trim_start_matches("agent-");
            assert_eq!(a.hostname, format!("new-{n}"));
            assert_eq!(a.kernel, "kernel");
            assert!(a.last_seen_secs.is_some());
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_disconnect_is_written_by_the_next_flush() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = store_with_agents(1)?;
        let seen = Seen::start(store.clone());
        seen.touch("agent-0").await;
        seen.flush().await;
        let agents = store.run(|db| db.agents()).await?;
        assert!(agents.first().and_then(|a| a.last_seen_secs).is_some());
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_agent_does_not_fail_the_batch() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store) = store_with_agents(1)?;
        let seen = Seen::start(store.clone());
        let (a, b) = tokio::join!(
            seen.check_in("agent-0", "h", "os", "k", "1"),
            seen.check_in("no-such-agent", "h", "os", "k", "1"),
        );
        a?;
        b?;
        Ok(())
    }
}
