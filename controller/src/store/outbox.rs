//! The durable outbox: pushes to external ticket systems waiting to be made, and what
//! each attempt did. A job is only ever marked done, never deleted.

use super::db::{Db, to_i64, to_u64};
use super::sql::{Row, Sql, args};
use super::{NewEvent, StoreError, StoreResult};
use crate::clock::format_secs;
use crate::outbox::OutboxJob;

/// `last_error` and `sync_state` keep this much of an error message.
const MAX_ERROR_CHARS: usize = 1000;

/// The timeline's actor for sync events.
const ACTOR: &str = "deskside";

const JOB_COLUMNS: &str =
    "id, ticket, kind, payload, attempts, next_attempt_at, last_error, created_at, done_at";

fn job_row(r: &Row<'_>) -> StoreResult<OutboxJob> {
    Ok(OutboxJob {
        id: to_u64(r.get(0)?),
        ticket: to_u64(r.get(1)?),
        kind: r.get(2)?,
        payload: r.get(3)?,
        attempts: u32::try_from(r.get::<i64>(4)?).unwrap_or(u32::MAX),
        next_attempt_at: to_u64(r.get(5)?),
        last_error: r.get(6)?,
        created_at: to_u64(r.get(7)?),
        done_at: r.get::<Option<i64>>(8)?.map(to_u64),
    })
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_ERROR_CHARS).collect();
    if s.chars().nth(MAX_ERROR_CHARS).is_some() {
        out.push('…');
    }
    out
}

impl Db {
    /// Queues a job for `ticket`, due now, and notes it in the ticket's sync state.
    pub fn outbox_enqueue(
        &mut self,
        ticket: u64,
        kind: &str,
        payload: &str,
        now: u64,
    ) -> StoreResult<u64> {
        let mut tx = self.write()?;
        let exists: bool = tx.one(
            "SELECT EXISTS (SELECT 1 FROM tickets WHERE number = ?1)",
            args![to_i64(ticket)],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::NotFound(format!(
                "no ticket #{ticket}; `deskside ticket list` shows them"
            )));
        }
        let id: i64 = tx.one(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM outbox",
            args![],
            |r| r.get(0),
        )?;
        tx.exec(
            "INSERT INTO outbox (id, ticket, kind, payload, attempts, next_attempt_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
            args![id, to_i64(ticket), kind, payload, to_i64(now)],
        )?;
        tx.exec(
            "UPDATE tickets SET sync_state = ?2 WHERE number = ?1",
            args![
                to_i64(ticket),
                format!("queued for sync at {}", format_secs(now))
            ],
        )?;
        tx.commit()?;
        Ok(to_u64(id))
    }

    /// Claims up to `limit` due jobs: each is pushed `lease` seconds into the future so
    /// another worker does not run it too; a worker that dies mid-job leaves it due
    /// again when the lease ends.
    pub fn outbox_claim_due(
        &mut self,
        now: u64,
        lease: u64,
        limit: usize,
    ) -> StoreResult<Vec<OutboxJob>> {
        let mut tx = self.write()?;
        let jobs: Vec<OutboxJob> = tx.rows(
            &format!(
                "SELECT {JOB_COLUMNS} FROM outbox WHERE done_at IS NULL AND next_attempt_at <= ?1 \
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ),
            args![to_i64(now), i64::try_from(limit).unwrap_or(i64::MAX)],
            job_row,
        )?;
        let until = to_i64(now.saturating_add(lease));
        for job in &jobs {
            tx.exec(
                "UPDATE outbox SET next_attempt_at = ?2 WHERE id = ?1",
                args![to_i64(job.id), until],
            )?;
        }
        tx.commit()?;
        Ok(jobs)
    }

    /// Marks a job done: links the ticket to `external_ref`, records the sync state (with
    /// the external ticket's `link`, if any), and appends a `synced` timeline entry.
    pub fn outbox_done(
        &mut self,
        id: u64,
        external_ref: &str,
        link: Option<&str>,
        detail: &str,
        now: u64,
    ) -> StoreResult<()> {
        let mut tx = self.write()?;
        let ticket: Option<i64> = tx.row(
            "SELECT ticket FROM outbox WHERE id = ?1",
            args![to_i64(id)],
            |r| r.get(0),
        )?;
        let ticket = ticket
            .map(to_u64)
            .ok_or_else(|| StoreError::NotFound(format!("no outbox job {id}")))?;
        tx.exec(
            "UPDATE outbox SET done_at = ?2, last_error = NULL WHERE id = ?1",
            args![to_i64(id), to_i64(now)],
        )?;
        tx.exec(
            "UPDATE tickets SET external_ref = ?2, sync_state = ?3 WHERE number = ?1",
            args![
                to_i64(ticket),
                external_ref,
                format!(
                    "synced to {external_ref} at {}{}",
                    format_secs(now),
                    link.map(|l| format!(" ({l})")).unwrap_or_default()
                )
            ],
        )?;
        tx.commit()?;
        // The timeline has its own hash-chained append; a crash between the two commits
        // loses only this entry, never the job's outcome.
        self.add_event(
            ticket,
            &NewEvent {
                actor: ACTOR,
                kind: "synced",
                detail: &format!("synced to {external_ref}: {detail}"),
                evidence_sha256: None,
            },
        )?;
        Ok(())
    }

    /// Records a failed attempt: counts it, schedules the next at `next_attempt_at`, and
    /// shows the error in the ticket's sync state. `created_ref` is an external ticket
    /// the attempt created before failing, kept so the retry reuses it. Returns the
    /// number of attempts so far.
    pub fn outbox_failed(
        &mut self,
        id: u64,
        error: &str,
        next_attempt_at: u64,
        created_ref: Option<&str>,
    ) -> StoreResult<u32> {
        let error = clip(error);
        let mut tx = self.write()?;
        let row: Option<(i64, i64)> = tx.row(
            "SELECT ticket, attempts FROM outbox WHERE id = ?1",
            args![to_i64(id)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (ticket, attempts) =
            row.ok_or_else(|| StoreError::NotFound(format!("no outbox job {id}")))?;
        let attempts = attempts.saturating_add(1);
        tx.exec(
            "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1",
            args![
                to_i64(id),
                attempts,
                to_i64(next_attempt_at),
                error.as_str()
            ],
        )?;
        tx.exec(
            "UPDATE tickets SET sync_state = ?2, external_ref = COALESCE(?3, external_ref) WHERE number = ?1",
            args![
                ticket,
                format!(
                    "retrying (attempt {attempts}): {error}; next try at {}",
                    format_secs(next_attempt_at)
                ),
                created_ref
            ],
        )?;
        tx.commit()?;
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    /// Jobs not yet delivered.
    pub fn outbox_pending(&mut self) -> StoreResult<u64> {
        let n: i64 = self.conn.one(
            "SELECT COUNT(*) FROM outbox WHERE done_at IS NULL",
            args![],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    /// Jobs, oldest first: all of them, or one ticket's.
    pub fn outbox_jobs(&mut self, ticket: Option<u64>) -> StoreResult<Vec<OutboxJob>> {
        self.conn.rows(
            &format!("SELECT {JOB_COLUMNS} FROM outbox WHERE CAST(?1 AS BIGINT) IS NULL OR ticket = ?1 ORDER BY id"),
            args![ticket.map(to_i64)],
            job_row,
        )
    }

    /// Makes pending jobs due at `now` (all, or one ticket's): `ticket sync N` and tests
    /// use it to retry without waiting out the backoff. Returns how many.
    pub fn outbox_retry_now(&mut self, ticket: Option<u64>, now: u64) -> StoreResult<usize> {
        let n = self.conn.exec(
            "UPDATE outbox SET next_attempt_at = ?2 WHERE done_at IS NULL AND (CAST(?1 AS BIGINT) IS NULL OR ticket = ?1)",
            args![ticket.map(to_i64), to_i64(now)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use deskside_proto::msg::identity::Tier;

    use super::*;
    use crate::store::NewTicket;
    use crate::store::testing::engines;

    fn ticket(title: &str) -> NewTicket<'_> {
        NewTicket {
            title,
            requester: "pat",
            priority: "normal",
            agent: None,
            by: "alice",
            tier: Tier::L1,
        }
    }

    #[test]
    fn outbox_claim_fail_and_finish() -> anyhow::Result<()> {
        engines(claim_fail_and_finish)
    }

    fn claim_fail_and_finish(db: &mut Db) -> anyhow::Result<()> {
        let n = db.create_ticket(&ticket("printer"))?;
        let id = db.outbox_enqueue(n, "sync", "{}", 100)?;
        assert!(db.outbox_claim_due(99, 60, 10)?.is_empty());
        let claimed = db.outbox_claim_due(100, 60, 10)?;
        assert_eq!(claimed.len(), 1);
        // Leased: not claimable again until the lease ends.
        assert!(db.outbox_claim_due(150, 60, 10)?.is_empty());

        assert_eq!(db.outbox_failed(id, "boom", 300, Some("rt:7"))?, 1);
        let job = db
            .outbox_jobs(Some(n))?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("job"))?;
        assert_eq!((job.attempts, job.next_attempt_at), (1, 300));
        assert_eq!(job.last_error.as_deref(), Some("boom"));
        assert!(job.done_at.is_none());
        let state: (Option<String>, Option<String>) = db.conn.one(
            "SELECT external_ref, sync_state FROM tickets WHERE number = ?1",
            args![to_i64(n)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        assert_eq!(state.0.as_deref(), Some("rt:7"));
        assert!(
            state
                .1
                .unwrap_or_default()
                .starts_with("retrying (attempt 1): boom")
        );

        assert_eq!(db.outbox_retry_now(Some(n), 200)?, 1);
        assert_eq!(db.outbox_claim_due(200, 60, 10)?.len(), 1);
        db.outbox_done(
            id,
            "rt:7",
            Some("https://rt.example.org/Ticket/Display.html?id=7"),
            "comment added",
            210,
        )?;
        assert!(db.outbox_claim_due(10_000, 60, 10)?.is_empty());
        let state: Option<String> = db.conn.one(
            "SELECT sync_state FROM tickets WHERE number = ?1",
            args![to_i64(n)],
            |r| r.get(0),
        )?;
        let state = state.unwrap_or_default();
        assert!(state.starts_with("synced to rt:7 at "), "{state}");
        assert!(
            state.ends_with("(https://rt.example.org/Ticket/Display.html?id=7)"),
            "{state}"
        );
        let job = db
            .outbox_jobs(None)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("job"))?;
        assert_eq!(job.done_at, Some(210));
        let last = db
            .timeline(n)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("timeline"))?;
        assert_eq!(last.kind, "synced");
        assert!(last.detail.contains("rt:7"));
        Ok(())
    }

    #[test]
    fn outbox_refuses_unknown_ticket() -> anyhow::Result<()> {
        engines(refuses_unknown_ticket)
    }

    fn refuses_unknown_ticket(db: &mut Db) -> anyhow::Result<()> {
        assert!(matches!(
            db.outbox_enqueue(9, "sync", "{}", 1),
            Err(StoreError::NotFound(_))
        ));
        Ok(())
    }
}
