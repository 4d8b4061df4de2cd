//! A ticket's timeline and evidence: the hash-chained entries (each hashes the one before
//! it, from [`GENESIS_HASH`]) and the evidence records they point to.

use deskside_proto::msg::tech::{EvidenceRef, TimelineEntry};
use sha2::{Digest, Sha256};

use super::db::{Db, to_i64, to_u64};
use super::sql::{Sql, Tx, args};
use super::{NewEvent, NewEvidence, StoreResult};
use crate::clock::now_secs;

/// The hash a ticket's first timeline entry chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

impl Db {
    pub fn timeline(&mut self, number: u64) -> StoreResult<Vec<TimelineEntry>> {
        self.conn.rows(
            "SELECT seq, at, actor, kind, detail, evidence_sha256, prev_hash, hash FROM timeline WHERE ticket = ?1 ORDER BY seq",
            args![to_i64(number)],
            |r| {
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
        })
    }

    /// Evidence on a ticket; `location` is left empty for the blob store to fill.
    pub fn evidence(&mut self, number: u64) -> StoreResult<Vec<EvidenceRef>> {
        self.conn.rows(
            "SELECT sha256, kind, size_bytes, agent_id, created_at, signature, redaction FROM evidence WHERE ticket = ?1 ORDER BY created_at, sha256",
            args![to_i64(number)],
            |r| {
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
        })
    }

    /// An agent's newest `limit` snapshots on any ticket, newest first, as
    /// `(ticket, item)`; the caller filters by who may see the ticket.
    pub fn agent_snapshots(
        &mut self,
        agent: &str,
        limit: u64,
    ) -> StoreResult<Vec<(u64, EvidenceRef)>> {
        self.conn.rows(
            "SELECT ticket, sha256, kind, size_bytes, agent_id, created_at, signature FROM evidence \
             WHERE agent_id = ?1 AND kind = 'snapshot' ORDER BY created_at DESC, sha256 LIMIT ?2",
            args![agent, to_i64(limit)],
            |r| {
            Ok((
                to_u64(r.get(0)?),
                EvidenceRef {
                    sha256: r.get(1)?,
                    kind: r.get(2)?,
                    size_bytes: to_u64(r.get(3)?),
                    agent: r.get(4)?,
                    created_at_secs: to_u64(r.get(5)?),
                    location: String::new(),
                    signature: r.get(6)?,
                    redaction: Vec::new(),
                },
            ))
        })
    }

    /// Appends an event to a ticket's timeline.
    pub fn add_event(&mut self, number: u64, event: &NewEvent<'_>) -> StoreResult<TimelineEntry> {
        let mut tx = self.write()?;
        let entry = append_event(&mut tx, number, event)?;
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
        let mut tx = self.write()?;
        insert_evidence(&mut tx, number, item)?;
        let entry = append_event(&mut tx, number, event)?;
        tx.commit()?;
        Ok(entry)
    }
}

/// Inserts an evidence record (a second record of the same bytes on the ticket is a no-op).
pub(super) fn insert_evidence(tx: &mut Tx<'_>, number: u64, item: &NewEvidence) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO evidence (ticket, sha256, kind, size_bytes, agent_id, created_at, signature, redaction) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (ticket, sha256) DO NOTHING",
        args![
            to_i64(number),
            &item.sha256,
            item.kind.as_str(),
            to_i64(item.size_bytes),
            &item.agent_id,
            to_i64(now_secs()),
            &item.signature,
            item.redaction.join(",")
        ],
    )?;
    Ok(())
}

/// Appends one chained entry. A technician's first action on a ticket is its first
/// response (for the SLA), makes them its owner if it has none, and opens it.
pub(super) fn append_event(
    tx: &mut Tx<'_>,
    number: u64,
    e: &NewEvent<'_>,
) -> StoreResult<TimelineEntry> {
    let last: Option<(i64, String)> = tx.row(
        "SELECT seq, hash FROM timeline WHERE ticket = ?1 ORDER BY seq DESC LIMIT 1",
        args![to_i64(number)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
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
    tx.exec(
        "INSERT INTO timeline (ticket, seq, at, actor, kind, detail, evidence_sha256, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![
            to_i64(number),
            to_i64(entry.seq),
            to_i64(entry.at_secs),
            &entry.actor,
            &entry.kind,
            &entry.detail,
            &entry.evidence_sha256,
            &entry.prev_hash,
            &entry.hash
        ],
    )?;
    let by_technician = !e.actor.starts_with("agent ")
        && !matches!(
            e.kind,
            "created" | "escalated" | "resolved" | "synced" | "sync" | "bundle"
        );
    if by_technician {
        tx.exec(
            "UPDATE tickets SET first_response_at = COALESCE(first_response_at, ?2), owner = COALESCE(owner, ?3), \
             status = CASE WHEN status IN ('new', 'escalated') THEN 'open' ELSE status END WHERE number = ?1",
            args![to_i64(number), to_i64(entry.at_secs), e.actor],
        )?;
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::engines;
    use crate::store::tickets::tests::open;

    #[test]
    fn timeline_is_a_hash_chain() -> anyhow::Result<()> {
        engines(hash_chain)
    }

    fn hash_chain(db: &mut Db) -> anyhow::Result<()> {
        let n = open(db)?;
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
        engines(evidence_once)
    }

    fn evidence_once(db: &mut Db) -> anyhow::Result<()> {
        let n = open(db)?;
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
}
