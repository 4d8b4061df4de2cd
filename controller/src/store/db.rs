//! The store's connection on either engine ([`Db`]), opening and migrating it, and the
//! token, agent and technician methods.

use std::path::Path;
use std::time::Duration;

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::AgentSummary;
use rusqlite::Connection;

use super::pg::PgConn;
use super::schema::MIGRATIONS;
use super::sql::{Conn, Row, Sql, Tx, args};
use super::{
    NewAgent, Redeem, Sighting, StoreAt, StoreError, StoreResult, Technician, TokenFor, TokenRecord,
};
use crate::clock::now_secs;

/// Writers wait this long for the lock before reporting "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's prepared statements kept per connection: more than the store's distinct
/// statements, so none is prepared twice.
const SQLITE_STATEMENT_CACHE: usize = 128;

#[derive(Debug)]
pub struct Db {
    pub(super) conn: Conn,
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
    /// Opens (creating and migrating if needed) the SQLite database at `path`.
    pub fn open(path: &Path) -> StoreResult<Db> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(SQLITE_STATEMENT_CACHE);
        // WAL: readers never block the writer, and a crash mid-write leaves the last
        // committed state. synchronous=FULL makes every commit durable before we ack.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut conn = conn;
        migrate_sqlite(&mut conn)?;
        Ok(Db {
            conn: Conn::Sqlite(conn),
        })
    }

    /// Opens the store wherever `at` says, migrating it if needed.
    pub fn open_at(at: &StoreAt) -> StoreResult<Db> {
        match at {
            StoreAt::Sqlite(path) => Db::open(path),
            StoreAt::Postgres(url) => Ok(Db {
                conn: Conn::Pg(Box::new(PgConn::open(url)?)),
            }),
        }
    }

    /// Whether this store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.conn.is_postgres()
    }

    /// Starts a write transaction (see [`Tx`]).
    pub(super) fn write(&mut self) -> StoreResult<Tx<'_>> {
        self.conn.write()
    }

    // ---- tokens -------------------------------------------------------------------

    pub fn insert_token(&mut self, t: &TokenRecord) -> StoreResult<()> {
        let (kind, tech) = match &t.for_ {
            TokenFor::Agent => ("agent", None),
            TokenFor::Technician(name) => ("technician", Some(name.as_str())),
        };
        self.conn.exec(
            "INSERT INTO tokens (secret_sha256, kind, technician, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![t.secret_sha256.as_str(), kind, tech, to_i64(t.created_at), to_i64(t.expires_at)],
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
        let mut tx = self.write()?;
        let row = tx.row(
            "SELECT kind, technician, expires_at, used_at FROM tokens WHERE secret_sha256 = ?1",
            args![secret_sha256],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<Option<String>>(1)?,
                    to_u64(r.get(2)?),
                    r.get::<Option<i64>>(3)?.map(to_u64),
                ))
            },
        )?;
        let Some((kind, tech, expires_at, used_at)) = row else {
            return Ok(Err(Redeem::Unknown));
        };
        if let Some(at) = used_at {
            return Ok(Err(Redeem::Used { at }));
        }
        if now >= expires_at {
            return Ok(Err(Redeem::Expired { at: expires_at }));
        }
        tx.exec(
            "UPDATE tokens SET used_at = ?1, used_by = ?2 WHERE secret_sha256 = ?3",
            args![to_i64(now), by, secret_sha256],
        )?;
        tx.commit()?;
        Ok(Ok(match (kind.as_str(), tech) {
            ("technician", Some(name)) => TokenFor::Technician(name),
            _ => TokenFor::Agent,
        }))
    }

    // ---- agents -------------------------------------------------------------------

    pub fn insert_agent(&mut self, a: &NewAgent) -> StoreResult<()> {
        self.conn.exec(
            "INSERT INTO agents (id, hostname, os, cert_sha256, cert_not_after, enrolled_at, cert_pem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![a.id.as_str(), a.hostname.as_str(), a.os.as_str(), a.cert_sha256.as_str(), to_i64(a.cert_not_after), to_i64(now_secs()), a.cert_pem.as_str()],
        )?;
        Ok(())
    }

    /// Revokes an agent: its certificate is refused from now on. Returns false if unknown.
    pub fn revoke_agent(&mut self, id: &str) -> StoreResult<bool> {
        let n = self.conn.exec(
            "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            args![id, to_i64(now_secs())],
        )?;
        Ok(n > 0)
    }

    /// Revokes a technician. Returns false if unknown.
    /// Every console session of theirs ends with it.
    pub fn revoke_technician(&mut self, name: &str) -> StoreResult<bool> {
        let mut tx = self.write()?;
        let n = tx.exec(
            "UPDATE technicians SET revoked_at = COALESCE(revoked_at, ?2) WHERE name = ?1",
            args![name, to_i64(now_secs())],
        )?;
        tx.exec(
            "DELETE FROM console_sessions WHERE technician = ?1",
            args![name],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Ids of revoked agents and names of revoked technicians.
    pub fn revoked(&mut self) -> StoreResult<(Vec<String>, Vec<String>)> {
        let agents = self.conn.rows(
            "SELECT id FROM agents WHERE revoked_at IS NOT NULL",
            args![],
            |r| r.get(0),
        )?;
        let techs = self.conn.rows(
            "SELECT name FROM technicians WHERE revoked_at IS NOT NULL",
            args![],
            |r| r.get(0),
        )?;
        Ok((agents, techs))
    }

    /// The certificate (PEM) the controller issued to an agent.
    pub fn agent_cert(&mut self, id: &str) -> StoreResult<String> {
        self.conn
            .row(
                "SELECT cert_pem FROM agents WHERE id = ?1",
                args![id],
                |r| r.get(0),
            )?
            .ok_or_else(|| StoreError::NotFound(format!("no agent {id}")))
    }

    /// The agent's certificate fingerprint, and whether it is revoked.
    pub fn agent_credentials(&mut self, id: &str) -> StoreResult<Option<(String, bool)>> {
        self.conn.row(
            "SELECT cert_sha256, revoked_at IS NOT NULL FROM agents WHERE id = ?1",
            args![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Records check-ins and last-seen times in one transaction (one commit for the batch).
    /// A row for an agent that no longer exists is skipped.
    pub fn record_sightings(&mut self, sightings: &[Sighting]) -> StoreResult<()> {
        let mut tx = self.write()?;
        for s in sightings {
            match s {
                Sighting::CheckIn {
                    id,
                    hostname,
                    os,
                    kernel,
                    version,
                    at_secs,
                } => tx.exec(
                    "UPDATE agents SET hostname = ?2, os = ?3, kernel = ?4, agent_version = ?5, last_seen = ?6 WHERE id = ?1",
                    args![id, hostname, os, kernel, version, to_i64(*at_secs)],
                )?,
                Sighting::Seen { id, at_secs } => tx.exec(
                    "UPDATE agents SET last_seen = ?2 WHERE id = ?1",
                    args![id, to_i64(*at_secs)],
                )?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn agent_row(r: &Row<'_>) -> StoreResult<AgentSummary> {
        Ok(AgentSummary {
            id: r.get(0)?,
            hostname: r.get(1)?,
            os: r.get(2)?,
            kernel: r.get(3)?,
            agent_version: r.get(4)?,
            enrolled_at_secs: to_u64(r.get(5)?),
            last_seen_secs: r.get::<Option<i64>>(6)?.map(to_u64),
            online: false,
            revoked: r.get(7)?,
        })
    }

    pub(super) const AGENT_COLUMNS: &'static str =
        "id, hostname, os, kernel, agent_version, enrolled_at, last_seen, revoked_at IS NOT NULL";

    pub fn agents(&mut self) -> StoreResult<Vec<AgentSummary>> {
        self.conn.rows(
            &format!(
                "SELECT {} FROM agents ORDER BY hostname, id",
                Self::AGENT_COLUMNS
            ),
            args![],
            Self::agent_row,
        )
    }

    /// Finds an agent by id, or by a hostname that names exactly one agent.
    pub fn find_agent(&mut self, key: &str) -> StoreResult<AgentSummary> {
        let by_id = self.conn.row(
            &format!("SELECT {} FROM agents WHERE id = ?1", Self::AGENT_COLUMNS),
            args![key],
            Self::agent_row,
        )?;
        if let Some(agent) = by_id {
            return Ok(agent);
        }
        let mut found = self.conn.rows(
            &format!(
                "SELECT {} FROM agents WHERE hostname = ?1 AND revoked_at IS NULL",
                Self::AGENT_COLUMNS
            ),
            args![key],
            Self::agent_row,
        )?;
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
        let mut tx = self.write()?;
        let exists: bool = tx.one(
            "SELECT EXISTS (SELECT 1 FROM technicians WHERE name = ?1)",
            args![name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StoreError::Conflict(format!(
                "technician {name:?} already exists"
            )));
        }
        tx.exec(
            "INSERT INTO technicians (name, tier, created_at) VALUES (?1, ?2, ?3)",
            args![name, tier.as_str(), to_i64(now_secs())],
        )?;
        tx.commit()
    }

    pub fn technician(&mut self, name: &str) -> StoreResult<Option<Technician>> {
        self.conn.row(
            "SELECT name, tier, cert_sha256, revoked_at IS NOT NULL, prev_cert_sha256 FROM technicians WHERE name = ?1",
            args![name],
            |r| {
                Ok(Technician {
                    name: r.get(0)?,
                    tier: parse_tier(&r.get::<String>(1)?),
                    cert_sha256: r.get(2)?,
                    revoked: r.get(3)?,
                    prev_cert_sha256: r.get(4)?,
                })
            },
        )
    }

    pub fn set_technician_cert(
        &mut self,
        name: &str,
        cert_sha256: &str,
        not_after: u64,
    ) -> StoreResult<()> {
        self.conn.exec(
            "UPDATE technicians SET cert_sha256 = ?2, cert_not_after = ?3 WHERE name = ?1",
            args![name, cert_sha256, to_i64(not_after)],
        )?;
        Ok(())
    }
}

/// Applies the migrations a SQLite database lacks; its version is `PRAGMA user_version`.
fn migrate_sqlite(conn: &mut Connection) -> StoreResult<()> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::testing::engines;

    #[test]
    fn a_database_newer_than_this_controller_is_refused() -> anyhow::Result<()> {
        let known = i64::try_from(MIGRATIONS.len())?;
        let too_new = |r: StoreResult<Db>| matches!(r, Err(StoreError::TooNew { found, known: k }) if found == known + 1 && k == known);
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.db");
        drop(Db::open(&path)?);
        Connection::open(&path)?.pragma_update(None, "user_version", known + 1)?;
        assert!(too_new(Db::open(&path)), "SQLite");

        let url = deskside_testpg::database().map_err(anyhow::Error::msg)?;
        let at = StoreAt::Postgres(super::super::PgUrl::parse(&url).map_err(anyhow::Error::msg)?);
        let mut db = Db::open_at(&at)?;
        db.conn
            .exec("UPDATE deskside_schema SET version = ?1", args![known + 1])?;
        assert!(too_new(Db::open_at(&at)), "PostgreSQL");
        Ok(())
    }

    #[test]
    fn tokens_redeem_once_and_expire() -> anyhow::Result<()> {
        engines(redeem_once)
    }

    fn redeem_once(db: &mut Db) -> anyhow::Result<()> {
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
        engines(find_agent)
    }

    fn find_agent(db: &mut Db) -> anyhow::Result<()> {
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
