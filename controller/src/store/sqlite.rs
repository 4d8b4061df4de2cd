//! SQLite implementation of the store.

use std::path::Path;
use std::time::Duration;

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{AgentSummary, EvidenceRef, TicketSummary, TimelineEntry};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::schema::MIGRATIONS;
use super::{
    NewAgent, NewEvent, NewEvidence, Redeem, StoreError, StoreResult, Technician, TokenFor,
    TokenRecord,
};
use crate::clock::now_secs;

/// The hash a ticket's first timeline entry chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Writers wait this long for the lock before reporting "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Db {
    pub(super) conn: Connection,
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn parse_tier(s: &str) -> Tier {
    // The column is only ever written from a `Tier`; an edited database falls back to the
    // lowest tier rather than granting more.
    s.parse().unwrap_or(Tier::L1)
}

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
    pub fn open(path: &Path) -> StoreResult<Db> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer, and a crash mid-write leaves the last
        // committed state. synchronous=FULL makes every commit durable before we ack.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut db = Db { conn };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> StoreResult<()> {
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        let found: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)?;
        for (version, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(found).unwrap_or(0))
        {
            tx.execute_batch(sql)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(version + 1).unwrap_or(i64::MAX),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- tokens -------------------------------------------------------------------

    pub fn insert_token(&mut self, t: &TokenRecord) -> StoreResult<()> {
        let (kind, tech) = match &t.for_ {
            TokenFor::Agent => ("agent", None),
            TokenFor::Technician(name) => ("technician", Some(name.as_str())),
        };
        self.conn.execute(
            "INSERT INTO tokens (secret_sha256, kind, technician, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![t.secret_sha256, kind, tech, to_i64(t.created_at), to_i64(t.expires_at)],
        )?;
        Ok(())
    }

    /// Marks the token used by `by` if it is known, unexpired and unused — atomically, so
    /// two enrollments racing with one token cannot both win.
    pub fn redeem_token(
        &mut self,
        secret_sha256: &str,
        now: u64,
        by: &str,
    ) -> StoreResult<Result<TokenFor, Redeem>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = tx
            .query_row(
                "SELECT kind, technician, expires_at, used_at FROM tokens WHERE secret_sha256 = ?1",
                [secret_sha256],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        to_u64(r.get(2)?),
                        r.get::<_, Option<i64>>(3)?.map(to_u64),
                    ))
                },
            )
            .optional()?;
        let Some((kind, tech, expires_at, used_at)) = row else {
            return Ok(Err(Redeem::Unknown));
        };
        if let Some(at) = used_at {
            return Ok(Err(Redeem::Used { at }));
        }
        if now >= expires_at {
            return Ok(Err(Redeem::Expired { at: expires_at }));
        }
        tx.execute(
            "UPDATE tokens SET used_at = ?1, used_by = ?2 WHERE secret_sha256 = ?3",
            params![to_i64(now), by, secret_sha256],
        )?;
        tx.commit()?;
        Ok(Ok(match (kind.as_str(), tech) {
            ("technician", Some(name)) => TokenFor::Technician(name),
            _ => TokenFor::Agent,
        }))
    }

    // ---- agents -------------------------------------------------------------------

    pub fn insert_agent(&mut self, a: &NewAgent) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO agents (id, hostname, os, cert_sha256, cert_not_after, enrolled_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![a.id, a.hostname, a.os, a.cert_sha256, to_i64(a.cert_not_after), to_i64(now_secs())],
        )?;
        Ok(())
    }

    /// The agent's certificate fingerprint, and whether it is revoked.
    pub fn agent_credentials(&mut self, id: &str) -> StoreResult<Option<(String, bool)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT cert_sha256, revoked_at IS NOT NULL FROM agents WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn check_in(
        &mut self,
        id: &str,
        hostname: &str,
        os: &str,
        kernel: &str,
        version: &str,
    ) -> StoreResult<()> {
        self.conn.execute(
            "UPDATE agents SET hostname = ?2, os = ?3, kernel = ?4, agent_version = ?5, last_seen = ?6 WHERE id = ?1",
            params![id, hostname, os, kernel, version, to_i64(now_secs())],
        )?;
        Ok(())
    }

    pub fn touch_agent(&mut self, id: &str) -> StoreResult<()> {
        self.conn.execute(
            "UPDATE agents SET last_seen = ?2 WHERE id = ?1",
            params![id, to_i64(now_secs())],
        )?;
        Ok(())
    }

    fn agent_row(r: &Row<'_>) -> rusqlite::Result<AgentSummary> {
        Ok(AgentSummary {
            id: r.get(0)?,
            hostname: r.get(1)?,
            os: r.get(2)?,
            kernel: r.get(3)?,
            agent_version: r.get(4)?,
            enrolled_at_secs: to_u64(r.get(5)?),
            last_seen_secs: r.get::<_, Option<i64>>(6)?.map(to_u64),
            online: false,
            revoked: r.get(7)?,
        })
    }

    const AGENT_COLUMNS: &'static str =
        "id, hostname, os, kernel, agent_version, enrolled_at, last_seen, revoked_at IS NOT NULL";

    pub fn agents(&mut self) -> StoreResult<Vec<AgentSummary>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM agents ORDER BY hostname, id",
            Self::AGENT_COLUMNS
        ))?;
        let rows = stmt.query_map([], Self::agent_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Finds an agent by id, or by a hostname that names exactly one agent.
    pub fn find_agent(&mut self, key: &str) -> StoreResult<AgentSummary> {
        let by_id = self
            .conn
            .query_row(
                &format!("SELECT {} FROM agents WHERE id = ?1", Self::AGENT_COLUMNS),
                [key],
                Self::agent_row,
            )
            .optional()?;
        if let Some(agent) = by_id {
            return Ok(agent);
        }
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM agents WHERE hostname = ?1 AND revoked_at IS NULL",
            Self::AGENT_COLUMNS
        ))?;
        let mut found: Vec<AgentSummary> = stmt
            .query_map([key], Self::agent_row)?
            .collect::<Result<_, _>>()?;
        match found.len() {
            0 => Err(StoreError::NotFound(format!(
                "no agent with id or hostname {key:?}; `deskside agents` lists them"
            ))),
            1 => Ok(found.remove(0)),
            n => Err(StoreError::Conflict(format!(
                "{n} agents have hostname {key:?}; use the agent id (`deskside agents`)"
            ))),
        }
    }

    // ---- technicians --------------------------------------------------------------

    pub fn insert_technician(&mut self, name: &str, tier: Tier) -> StoreResult<()> {
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM technicians WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StoreError::Conflict(format!(
                "technician {name:?} already exists"
            )));
        }
        self.conn.execute(
            "INSERT INTO technicians (name, tier, created_at) VALUES (?1, ?2, ?3)",
            params![name, tier.as_str(), to_i64(now_secs())],
        )?;
        Ok(())
    }

    pub fn technician(&mut self, name: &str) -> StoreResult<Option<Technician>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, tier, cert_sha256, revoked_at IS NOT NULL FROM technicians WHERE name = ?1",
                [name],
                |r| {
                    Ok(Technician {
                        name: r.get(0)?,
                        tier: parse_tier(&r.get::<_, String>(1)?),
                        cert_sha256: r.get(2)?,
                        revoked: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_technician_cert(
        &mut self,
        name: &str,
        cert_sha256: &str,
        not_after: u64,
    ) -> StoreResult<()> {
        self.conn.execute(
            "UPDATE technicians SET cert_sha256 = ?2, cert_not_after = ?3 WHERE name = ?1",
            params![name, cert_sha256, to_i64(not_after)],
        )?;
        Ok(())
    }

    // ---- tickets ------------------------------------------------------------------

    pub fn create_ticket(
        &mut self,
        title: &str,
        agent: Option<&str>,
        by: &str,
        tier: Tier,
    ) -> StoreResult<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let number: i64 = tx.query_row(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM tickets",
            [],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO tickets (number, title, status, tier, agent_id, created_by, created_at) VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6)",
            params![number, title, tier.as_str(), agent, by, to_i64(now_secs())],
        )?;
        let number = to_u64(number);
        let detail = match agent {
            Some(a) => format!("ticket opened: {title} (agent {a})"),
            None => format!("ticket opened: {title}"),
        };
        append_event(
            &tx,
            number,
            &NewEvent {
                actor: by,
                kind: "created",
                detail: &detail,
                evidence_sha256: None,
            },
        )?;
        tx.commit()?;
        Ok(number)
    }

    fn ticket_row(r: &Row<'_>) -> rusqlite::Result<TicketSummary> {
        Ok(TicketSummary {
            number: to_u64(r.get(0)?),
            title: r.get(1)?,
            status: r.get(2)?,
            tier: parse_tier(&r.get::<_, String>(3)?),
            agent: r.get(4)?,
            created_by: r.get(5)?,
            created_at_secs: to_u64(r.get(6)?),
            evidence_count: u32::try_from(r.get::<_, i64>(7)?).unwrap_or(u32::MAX),
        })
    }

    const TICKET_SELECT: &'static str = "SELECT t.number, t.title, t.status, t.tier, t.agent_id, t.created_by, t.created_at, \
         (SELECT COUNT(*) FROM evidence e WHERE e.ticket = t.number) FROM tickets t";

    pub fn tickets(&mut self) -> StoreResult<Vec<TicketSummary>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{} ORDER BY t.number", Self::TICKET_SELECT))?;
        let rows = stmt.query_map([], Self::ticket_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn ticket(&mut self, number: u64) -> StoreResult<TicketSummary> {
        self.conn
            .query_row(
                &format!("{} WHERE t.number = ?1", Self::TICKET_SELECT),
                [to_i64(number)],
                Self::ticket_row,
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
            "SELECT sha256, kind, size_bytes, agent_id, created_at FROM evidence WHERE ticket = ?1 ORDER BY created_at, sha256",
        )?;
        let rows = stmt.query_map([to_i64(number)], |r| {
            Ok(EvidenceRef {
                sha256: r.get(0)?,
                kind: r.get(1)?,
                size_bytes: to_u64(r.get(2)?),
                agent: r.get(3)?,
                created_at_secs: to_u64(r.get(4)?),
                location: String::new(),
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
        tx.execute(
            "INSERT INTO evidence (ticket, sha256, kind, size_bytes, agent_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (ticket, sha256) DO NOTHING",
            params![to_i64(number), item.sha256, item.kind, to_i64(item.size_bytes), item.agent_id, to_i64(now_secs())],
        )?;
        let entry = append_event(&tx, number, event)?;
        tx.commit()?;
        Ok(entry)
    }
}

fn append_event(
    tx: &rusqlite::Transaction<'_>,
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

    #[test]
    fn tokens_redeem_once_and_expire() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        let rec = |h: &str, exp| TokenRecord {
            secret_sha256: h.into(),
            for_: TokenFor::Agent,
            created_at: 1,
            expires_at: exp,
        };
        db.insert_token(&rec("a", 100))?;
        db.insert_token(&rec("b", 10))?;
        assert_eq!(db.redeem_token("a", 50, "x")?, Ok(TokenFor::Agent));
        assert_eq!(db.redeem_token("a", 51, "y")?, Err(Redeem::Used { at: 50 }));
        assert_eq!(
            db.redeem_token("b", 10, "x")?,
            Err(Redeem::Expired { at: 10 })
        );
        assert_eq!(db.redeem_token("zz", 1, "x")?, Err(Redeem::Unknown));
        Ok(())
    }

    #[test]
    fn timeline_is_a_hash_chain() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        let n = db.create_ticket("printer", None, "alice", Tier::L1)?;
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
    fn find_agent_by_id_or_unique_hostname() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        for (id, host) in [("ag-1", "pc1"), ("ag-2", "pc2"), ("ag-3", "pc2")] {
            db.insert_agent(&NewAgent {
                id: id.into(),
                hostname: host.into(),
                os: "Debian".into(),
                cert_sha256: "00".into(),
                cert_not_after: 1,
            })?;
        }
        assert_eq!(db.find_agent("pc1")?.id, "ag-1");
        assert_eq!(db.find_agent("ag-3")?.id, "ag-3");
        assert!(matches!(db.find_agent("pc2"), Err(StoreError::Conflict(_))));
        assert!(matches!(
            db.find_agent("nope"),
            Err(StoreError::NotFound(_))
        ));
        Ok(())
    }

    #[test]
    fn evidence_is_recorded_once_per_ticket() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        let n = db.create_ticket("slow", None, "alice", Tier::L1)?;
        let item = NewEvidence {
            sha256: "ab".into(),
            kind: "snapshot".into(),
            size_bytes: 3,
            agent_id: None,
        };
        let ev = NewEvent {
            actor: "alice",
            kind: "snapshot",
            detail: "d",
            evidence_sha256: Some("ab"),
        };
        db.add_evidence(n, &item, &ev)?;
        db.add_evidence(n, &item, &ev)?;
        assert_eq!(db.evidence(n)?.len(), 1);
        assert_eq!(db.ticket(n)?.evidence_count, 1);
        Ok(())
    }
}
