//! Tickets, their hash-chained timeline and their evidence records.

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{EvidenceRef, Sla, TicketSummary, TimelineEntry};
use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::sqlite::{Db, to_i64, to_u64};
use super::{NewEvent, NewEvidence, StoreError, StoreResult};
use crate::clock::now_secs;

/// The hash a ticket's first timeline entry chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Ticket priorities, lowest first.
pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

/// The hash of a timeline entry: SHA-256 over the previous hash and the entry's fields,
/// as a JSON array (unambiguous field boundaries, easy to recompute anywhere).
pub fn entry_hash(ticket: u64, e: &TimelineEntry) -> String {
    let canonical = serde_json::json!([
        ticket,
        e.seq,
        e.at_secs,
        e.actor,
        e.kind,
        e.detail,
        e.evidence_sha256,
        e.prev_hash
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// A ticket to open.
#[derive(Debug, Clone)]
pub struct NewTicket<'a> {
    pub title: &'a str,
    pub requester: &'a str,
    pub priority: &'a str,
    pub agent: Option<&'a str>,
    pub by: &'a str,
    pub tier: Tier,
}

fn parse_tier(s: &str) -> Tier {
    // Only ever written from a `Tier`; an edited database falls back to the lowest tier.
    s.parse().unwrap_or(Tier::L1)
}

pub(super) const TICKET_SELECT: &str = "SELECT t.number, t.title, t.status, t.tier, t.agent_id, t.created_by, t.created_at, \
     (SELECT COUNT(*) FROM evidence e WHERE e.ticket = t.number), t.priority, t.requester, t.owner, \
     t.first_response_at, t.resolved_at, t.external_ref, t.sync_state FROM tickets t";

pub(super) fn ticket_row(r: &Row<'_>) -> rusqlite::Result<TicketSummary> {
    Ok(TicketSummary {
        number: to_u64(r.get(0)?),
        title: r.get(1)?,
        status: r.get(2)?,
        tier: parse_tier(&r.get::<_, String>(3)?),
        agent: r.get(4)?,
        created_by: r.get(5)?,
        created_at_secs: to_u64(r.get(6)?),
        evidence_count: u32::try_from(r.get::<_, i64>(7)?).unwrap_or(u32::MAX),
        priority: r.get(8)?,
        requester: r.get(9)?,
        owner: r.get(10)?,
        first_response_at_secs: r.get::<_, Option<i64>>(11)?.map(to_u64),
        resolved_at_secs: r.get::<_, Option<i64>>(12)?.map(to_u64),
        external_ref: r.get(13)?,
        sync_state: r.get(14)?,
        // Filled from the SLA configuration by the caller.
        sla: Sla::default(),
    })
}

impl Db {
    pub fn create_ticket(&mut self, t: &NewTicket<'_>) -> StoreResult<u64> {
        if !PRIORITIES.contains(&t.priority) {
            return Err(StoreError::Conflict(format!(
                "priority must be one of {}",
                PRIORITIES.join(", ")
            )));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let number: i64 = tx.query_row(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM tickets",
            [],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO tickets (number, title, status, tier, agent_id, created_by, created_at, requester, priority, owner) \
             VALUES (?1, ?2, 'new', ?3, ?4, ?5, ?6, ?7, ?8, ?5)",
            params![number, t.title, t.tier.as_str(), t.agent, t.by, to_i64(now_secs()), t.requester, t.priority],
        )?;
        let number = to_u64(number);
        let mut detail = format!("ticket opened: {} (priority {}", t.title, t.priority);
        if !t.requester.is_empty() {
            detail.push_str(&format!(", reported by {}", t.requester));
        }
        if let Some(a) = t.agent {
            detail.push_str(&format!(", agent {a}"));
        }
        detail.push(')');
        append_event(
            &tx,
            number,
            &NewEvent {
                actor: t.by,
                kind: "created",
                detail: &detail,
                evidence_sha256: None,
            },
        )?;
        tx.commit()?;
        Ok(number)
    }

    pub fn tickets(&mut self) -> StoreResult<Vec<TicketSummary>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{TICKET_SELECT} ORDER BY t.number"))?;
        let rows = stmt.query_map([], ticket_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn ticket(&mut self, number: u64) -> StoreResult<TicketSummary> {
        self.conn
            .query_row(
                &format!("{TICKET_SELECT} WHERE t.number = ?1"),
                [to_i64(number)],
                ticket_row,
            )
            .optional()?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "no ticket #{number}; `deskside ticket list` shows them"
                ))
            })
    }

    pub fn timeline(&mut self, number: u64) -> StoreResult<Vec<TimelineEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at, actor, kind, detail, evidence_sha256, prev_hash, hash FROM timeline WHERE ticket = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([to_i64(number)], |r| {
            Ok(TimelineEntry {
                seq: to_u64(r.get(0)?),
                at_secs: to_u64(r.get(1)?),
                actor: r.get(2)?,
                kind: r.get(3)?,
                detail: r.get(4)?,
                evidence_sha256: r.get(5)?,
                prev_hash: r.get(6)?,
                hash: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Evidence on a ticket; `location` is left empty for the blob store to fill.
    pub fn evidence(&mut self, number: u64) -> StoreResult<Vec<EvidenceRef>> {
        let mut stmt = self.conn.prepare(
            "SELECT sha256, kind, size_bytes, agent_id, created_at, signature, redaction FROM evidence WHERE ticket = ?1 ORDER BY created_at, sha256",
        )?;
        let rows = stmt.query_map([to_i64(number)], |r| {
            let redaction: String = r.get(6)?;
            Ok(EvidenceRef {
                sha256: r.get(0)?,
                kind: r.get(1)?,
                size_bytes: to_u64(r.get(2)?),
                agent: r.get(3)?,
                created_at_secs: to_u64(r.get(4)?),
                location: String::new(),
                signature: r.get(5)?,
                redaction: redaction
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends an event to a ticket's timeline.
    pub fn add_event(&mut self, number: u64, event: &NewEvent<'_>) -> StoreResult<TimelineEntry> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let entry = append_event(&tx, number, event)?;
        tx.commit()?;
        Ok(entry)
    }

    /// Records an evidence item and its timeline entry in one transaction. The blob must
    /// already be durable: this commit is what makes the item acknowledged.
    pub fn add_evidence(
        &mut self,
        number: u64,
        item: &NewEvidence,
        event: &NewEvent<'_>,
    ) -> StoreResult<TimelineEntry> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        insert_evidence(&tx, number, item)?;
        let entry = append_event(&tx, number, event)?;
        tx.commit()?;
        Ok(entry)
    }

    /// Moves the ticket to the next tier: L1 → L2 → L3 only, never down or sideways.
    pub fn escalate(
        &mut self,
        number: u64,
        to: Tier,
        note: &str,
        by: &str,
    ) -> StoreResult<(Tier, TimelineEntry)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (from, status): (String, String) = tx
            .query_row(
                "SELECT tier, status FROM tickets WHERE number = ?1",
                [to_i64(number)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no ticket #{number}")))?;
        let from = parse_tier(&from);
        if status == "resolved" {
            return Err(StoreError::Conflict(format!(
                "ticket #{number} is resolved; there is nothing to escalate"
            )));
        }
        if to <= from {
            return Err(StoreError::Conflict(format!(
                "ticket #{number} is already at {from}; escalation goes up (to {} or higher)",
                next(from)
            )));
        }
        tx.execute(
            "UPDATE tickets SET tier = ?2, status = 'escalated', owner = NULL WHERE number = ?1",
            params![to_i64(number), to.as_str()],
        )?;
        let detail = format!("escalated from {from} to {to} by {by}: {note}");
        let entry = append_event(
            &tx,
            number,
            &NewEvent {
                actor: by,
                kind: "escalated",
                detail: &detail,
                evidence_sha256: None,
            },
        )?;
        tx.commit()?;
        Ok((from, entry))
    }

    pub fn resolve(&mut self, number: u64, note: &str, by: &str) -> StoreResult<TimelineEntry> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE tickets SET status = 'resolved', resolved_at = ?2 WHERE number = ?1 AND status <> 'resolved'",
            params![to_i64(number), to_i64(now_secs())],
        )?;
        if changed == 0 {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM tickets WHERE number = ?1)",
                [to_i64(number)],
                |r| r.get(0),
            )?;
            return Err(if exists {
                StoreError::Conflict(format!("ticket #{number} is already resolved"))
            } else {
                StoreError::NotFound(format!("no ticket #{number}"))
            });
        }
        let detail = if note.is_empty() {
            format!("resolved by {by}")
        } else {
            format!("resolved by {by}: {note}")
        };
        let entry = append_event(
            &tx,
            number,
            &NewEvent {
                actor: by,
                kind: "resolved",
                detail: &detail,
                evidence_sha256: None,
            },
        )?;
        tx.commit()?;
        Ok(entry)
    }

    pub fn set_sync_state(
        &mut self,
        number: u64,
        external_ref: Option<&str>,
        state: &str,
    ) -> StoreResult<()> {
        self.conn.execute(
            "UPDATE tickets SET sync_state = ?2, external_ref = COALESCE(?3, external_ref) WHERE number = ?1",
            params![to_i64(number), state, external_ref],
        )?;
        Ok(())
    }
}

fn next(t: Tier) -> Tier {
    match t {
        Tier::L1 => Tier::L2,
        Tier::L2 | Tier::L3 => Tier::L3,
    }
}

/// Appends one chained entry. A technician's first action on a ticket is its first
/// response (for the SLA), makes them its owner if it has none, and opens it.
/// Inserts an evidence record (a second record of the same bytes on the ticket is a no-op).
pub(super) fn insert_evidence(
    tx: &Transaction<'_>,
    number: u64,
    item: &NewEvidence,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO evidence (ticket, sha256, kind, size_bytes, agent_id, created_at, signature, redaction) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (ticket, sha256) DO NOTHING",
        params![
            to_i64(number),
            item.sha256,
            item.kind.as_str(),
            to_i64(item.size_bytes),
            item.agent_id,
            to_i64(now_secs()),
            item.signature,
            item.redaction.join(",")
        ],
    )?;
    Ok(())
}

pub(super) fn append_event(
    tx: &Transaction<'_>,
    number: u64,
    e: &NewEvent<'_>,
) -> StoreResult<TimelineEntry> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM timeline WHERE ticket = ?1 ORDER BY seq DESC LIMIT 1",
            [to_i64(number)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (to_u64(seq) + 1, hash),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let mut entry = TimelineEntry {
        seq,
        at_secs: now_secs(),
        actor: e.actor.to_owned(),
        kind: e.kind.to_owned(),
        detail: e.detail.to_owned(),
        evidence_sha256: e.evidence_sha256.map(str::to_owned),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry_hash(number, &entry);
    tx.execute(
        "INSERT INTO timeline (ticket, seq, at, actor, kind, detail, evidence_sha256, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            to_i64(number),
            to_i64(entry.seq),
            to_i64(entry.at_secs),
            entry.actor,
            entry.kind,
            entry.detail,
            entry.evidence_sha256,
            entry.prev_hash,
            entry.hash
        ],
    )?;
    let by_technician = !e.actor.starts_with("agent ")
        && !matches!(
            e.kind,
            "created" | "escalated" | "resolved" | "synced" | "sync" | "bundle"
        );
    if by_technician {
        tx.execute(
            "UPDATE tickets SET first_response_at = COALESCE(first_response_at, ?2), owner = COALESCE(owner, ?3), \
             status = CASE WHEN status IN ('new', 'escalated') THEN 'open' ELSE status END WHERE number = ?1",
            params![to_i64(number), to_i64(entry.at_secs), e.actor],
        )?;
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> anyhow::Result<(tempfile::TempDir, Db)> {
        let dir = tempfile::tempdir()?;
        let db = Db::open(&dir.path().join("t.db"))?;
        Ok((dir, db))
    }

    fn open(db: &mut Db) -> StoreResult<u64> {
        db.create_ticket(&NewTicket {
            title: "printer",
            requester: "pat",
            priority: "high",
            agent: None,
            by: "alice",
            tier: Tier::L1,
        })
    }

    #[test]
    fn timeline_is_a_hash_chain() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        let n = open(&mut db)?;
        db.add_event(
            n,
            &NewEvent {
                actor: "alice",
                kind: "note",
                detail: "called user",
                evidence_sha256: None,
            },
        )?;
        let tl = db.timeline(n)?;
        assert_eq!(tl.len(), 2);
        let mut prev = GENESIS_HASH.to_owned();
        for e in &tl {
            assert_eq!(e.prev_hash, prev);
            assert_eq!(entry_hash(n, e), e.hash);
            prev = e.hash.clone();
        }
        let mut edited = tl.get(1).cloned().ok_or_else(|| anyhow::anyhow!("entry"))?;
        edited.detail = "did not call".into();
        assert_ne!(entry_hash(n, &edited), edited.hash);
        Ok(())
    }

    #[test]
    fn evidence_is_recorded_once_per_ticket_with_its_signature() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        let n = open(&mut db)?;
        let item = NewEvidence {
            sha256: "ab".into(),
            kind: deskside_proto::evidence::EvidenceKind::Snapshot,
            size_bytes: 3,
            agent_id: None,
            signature: Some("3045".into()),
            redaction: vec!["emails".into(), "mac_addresses".into()],
        };
        let ev = NewEvent {
            actor: "alice",
            kind: "snapshot",
            detail: "d",
            evidence_sha256: Some("ab"),
        };
        db.add_evidence(n, &item, &ev)?;
        db.add_evidence(n, &item, &ev)?;
        let items = db.evidence(n)?;
        assert_eq!(items.len(), 1);
        assert_eq!(items.first().map(|i| i.redaction.len()), Some(2));
        assert_eq!(db.ticket(n)?.evidence_count, 1);
        Ok(())
    }

    #[test]
    fn lifecycle_first_response_escalation_and_resolution() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        let n = open(&mut db)?;
        let t = db.ticket(n)?;
        assert_eq!(
            (t.status.as_str(), t.priority.as_str(), t.requester.as_str()),
            ("new", "high", "pat")
        );
        assert_eq!(t.first_response_at_secs, None);
        db.add_event(
            n,
            &NewEvent {
                actor: "alice",
                kind: "note",
                detail: "rang back",
                evidence_sha256: None,
            },
        )?;
        let t = db.ticket(n)?;
        assert_eq!(t.status, "open");
        assert!(t.first_response_at_secs.is_some());

        assert!(matches!(
            db.escalate(n, Tier::L1, "x", "alice"),
            Err(StoreError::Conflict(_))
        ));
        let (from, _) = db.escalate(n, Tier::L2, "needs a driver fix", "alice")?;
        assert_eq!(from, Tier::L1);
        let t = db.ticket(n)?;
        assert_eq!(
            (t.status.as_str(), t.tier, t.owner.clone()),
            ("escalated", Tier::L2, None)
        );
        db.add_event(
            n,
            &NewEvent {
                actor: "bob",
                kind: "note",
                detail: "on it",
                evidence_sha256: None,
            },
        )?;
        let t = db.ticket(n)?;
        assert_eq!(
            (t.status.as_str(), t.owner.as_deref()),
            ("open", Some("bob"))
        );

        db.resolve(n, "driver updated", "bob")?;
        assert!(matches!(
            db.resolve(n, "", "bob"),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            db.escalate(n, Tier::L3, "x", "bob"),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            db.resolve(99, "", "bob"),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(db.ticket(n)?.status, "resolved");
        Ok(())
    }

    #[test]
    fn unknown_priorities_are_refused() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        let bad = NewTicket {
            title: "t",
            requester: "",
            priority: "asap",
            agent: None,
            by: "a",
            tier: Tier::L1,
        };
        assert!(matches!(
            db.create_ticket(&bad),
            Err(StoreError::Conflict(_))
        ));
        Ok(())
    }
}
