//! SQLite implementation of the store.

use std::path::Path;
use std::time::Duration;

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::AgentSummary;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::schema::MIGRATIONS;
use super::{
    NewAgent, Redeem, Sighting, StoreError, StoreResult, Technician, TokenFor, TokenRecord,
};
use crate::clock::now_secs;

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
            "INSERT INTO agents (id, hostname, os, cert_sha256, cert_not_after, enrolled_at, cert_pem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![a.id, a.hostname, a.os, a.cert_sha256, to_i64(a.cert_not_after), to_i64(now_secs()), a.cert_pem],
        )?;
        Ok(())
    }

    /// Revokes an agent: its certificate is refused from now on. Returns false if unknown.
    pub fn revoke_agent(&mut self, id: &str) -> StoreResult<bool> {
        let n = self.conn.execute(
            "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![id, to_i64(now_secs())],
        )?;
        Ok(n > 0)
    }

    /// Revokes a technician. Returns false if unknown.
    /// Every console session of theirs ends with it.
    pub fn revoke_technician(&mut self, name: &str) -> StoreResult<bool> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE technicians SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
            params![name, to_i64(now_secs())],
        )?;
        tx.execute("DELETE FROM console_sessions WHERE technician = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Ids of revoked agents and names of revoked technicians.
    pub fn revoked(&mut self) -> StoreResult<(Vec<String>, Vec<String>)> {
        let mut a = self
            .conn
            .prepare("SELECT id FROM agents WHERE revoked_at IS NOT NULL")?;
        let agents = a.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        let mut t = self
            .conn
            .prepare("SELECT name FROM technicians WHERE revoked_at IS NOT NULL")?;
        let techs = t.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok((agents, techs))
    }

    /// The certificate (PEM) the controller issued to an agent.
    pub fn agent_cert(&mut self, id: &str) -> StoreResult<String> {
        self.conn
            .query_row("SELECT cert_pem FROM agents WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no agent {id}")))
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

    /// Records check-ins and last-seen times in one transaction (one commit for the batch).
    /// A row for an agent that no longer exists is skipped.
    pub fn record_sightings(&mut self, sightings: &[Sighting]) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        {
            let mut check_in = tx.prepare_cached(
                "UPDATE agents SET hostname = ?2, os = ?3, kernel = ?4, agent_version = ?5, last_seen = ?6 WHERE id = ?1",
            )?;
            let mut seen = tx.prepare_cached("UPDATE agents SET last_seen = ?2 WHERE id = ?1")?;
            for s in sightings {
                match s {
                    Sighting::CheckIn {
                        id,
                        hostname,
                        os,
                        kernel,
                        version,
                        at_secs,
                    } => check_in.execute(params![
                        id,
                        hostname,
                        os,
                        kernel,
                        version,
                        to_i64(*at_secs)
                    ])?,
                    Sighting::Seen { id, at_secs } => {
                        seen.execute(params![id, to_i64(*at_secs)])?
                    }
                };
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn agent_row(r: &Row<'_>) -> rusqlite::Result<AgentSummary> {
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

    pub(super) const AGENT_COLUMNS: &'static str =
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
                "SELECT name, tier, cert_sha256, revoked_at IS NOT NULL, prev_cert_sha256 FROM technicians WHERE name = ?1",
                [name],
                |r| {
                    Ok(Technician {
                        name: r.get(0)?,
                        tier: parse_tier(&r.get::<_, String>(1)?),
                        cert_sha256: r.get(2)?,
                        revoked: r.get(3)?,
                        prev_cert_sha256: r.get(4)?,
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
    fn find_agent_by_id_or_unique_hostname() -> anyhow::Result<()> {
        let (_d, mut db) = db()?;
        for (id, host) in [("ag-1", "pc1"), ("ag-2", "pc2"), ("ag-3", "pc2")] {
            db.insert_agent(&NewAgent {
                id: id.into(),
                hostname: host.into(),
                os: "Debian".into(),
                cert_sha256: "00".into(),
                cert_pem: String::new(),
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
}
