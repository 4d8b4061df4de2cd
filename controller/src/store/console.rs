//! The web console's logins, sessions and per-technician preferences. Secrets are never
//! stored: a setup link and a session cookie are kept as their SHA-256, a password as its
//! argon2id hash (PHC string). The TOTP secret is stored as is: the server needs it to
//! check codes.

use super::db::{Db, to_i64, to_u64};
use super::sql::{Sql, args};
use super::{StoreError, StoreResult};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::AgentSummary;

/// A technician's console login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLogin {
    pub technician: String,
    pub tier: Tier,
    pub admin: bool,
    /// `None` until the technician has followed their setup link.
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    pub failures: u64,
    pub locked_until: Option<u64>,
    /// The last TOTP time step accepted: a code is good once.
    pub last_totp_step: Option<u64>,
    pub revoked: bool,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub technician: String,
    pub tier: Tier,
    pub admin: bool,
    pub csrf: String,
    pub expires_at: u64,
}

/// An agent's id, its newest snapshot's worst finding, and when that was taken.
/// An agent with its newest snapshot's worst finding and when that snapshot was taken.
pub type FleetAgent = (AgentSummary, Option<String>, Option<u64>);

/// What a failed sign-in did to the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInState {
    /// Another failure is allowed.
    Open { failures: u64 },
    /// Locked until this time (seconds since the epoch).
    Locked { until: u64 },
}

fn tier_of(s: &str) -> Tier {
    // Written only from a `Tier`; an edited database falls back to the lowest tier.
    s.parse().unwrap_or(Tier::L1)
}

impl Db {
    /// Creates (or resets) `technician`'s console login: a fresh one-time setup link,
    /// no password, no TOTP, no sessions. `admin` gives the admin pages.
    pub fn console_add(
        &mut self,
        technician: &str,
        admin: bool,
        setup_sha256: &str,
        expires_at: u64,
        now: u64,
    ) -> StoreResult<()> {
        let mut tx = self.write()?;
        let known: Option<bool> = tx.row(
            "SELECT revoked_at IS NOT NULL FROM technicians WHERE name = ?1",
            args![technician],
            |r| r.get(0),
        )?;
        match known {
            None => {
                return Err(StoreError::NotFound(format!(
                    "no technician {technician:?}; add them first with `deskside tech add`"
                )));
            }
            Some(true) => {
                return Err(StoreError::Conflict(format!(
                    "technician {technician:?} is revoked"
                )));
            }
            Some(false) => {}
        }
        tx.exec(
            "INSERT INTO console_logins (technician, admin, setup_sha256, setup_expires_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (technician) DO UPDATE SET admin = ?2, password_hash = NULL, totp_secret = NULL, \
             setup_sha256 = ?3, setup_expires_at = ?4, failures = 0, locked_until = NULL, last_totp_step = NULL",
            args![technician, admin, setup_sha256, to_i64(expires_at), to_i64(now)],
        )?;
        tx.exec(
            "DELETE FROM console_sessions WHERE technician = ?1",
            args![technician],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The technician a setup link is for, while it is unused and unexpired.
    pub fn console_setup(&mut self, setup_sha256: &str, now: u64) -> StoreResult<Option<String>> {
        self.conn.row(
            "SELECT l.technician FROM console_logins l JOIN technicians t ON t.name = l.technician \
             WHERE l.setup_sha256 = ?1 AND l.setup_expires_at > ?2 AND t.revoked_at IS NULL",
            args![setup_sha256, to_i64(now)],
            |r| r.get(0),
        )
    }

    /// Sets the password and TOTP secret through a setup link, which is then used up.
    /// Returns the technician, or `None` when the link is no longer good.
    pub fn console_finish_setup(
        &mut self,
        setup_sha256: &str,
        password_hash: &str,
        totp_secret: &str,
        totp_step: u64,
        now: u64,
    ) -> StoreResult<Option<String>> {
        let mut tx = self.write()?;
        let Some(name) = tx.row(
            "SELECT technician FROM console_logins WHERE setup_sha256 = ?1 AND setup_expires_at > ?2",
            args![setup_sha256, to_i64(now)],
            |r| r.get::<String>(0),
        )?
        else {
            return Ok(None);
        };
        tx.exec(
            "UPDATE console_logins SET password_hash = ?2, totp_secret = ?3, last_totp_step = ?4, \
             setup_sha256 = NULL, setup_expires_at = NULL, failures = 0, locked_until = NULL \
             WHERE technician = ?1",
            args![name.as_str(), password_hash, totp_secret, to_i64(totp_step)],
        )?;
        tx.commit()?;
        Ok(Some(name))
    }

    pub fn console_login(&mut self, technician: &str) -> StoreResult<Option<ConsoleLogin>> {
        self.conn.row(
                "SELECT l.technician, t.tier, l.admin, l.password_hash, l.totp_secret, l.failures, \
                 l.locked_until, l.last_totp_step, t.revoked_at IS NOT NULL \
                 FROM console_logins l JOIN technicians t ON t.name = l.technician WHERE l.technician = ?1",
                args![technician],
                |r| {
                    Ok(ConsoleLogin {
                        technician: r.get(0)?,
                        tier: tier_of(&r.get::<String>(1)?),
                        admin: r.get(2)?,
                        password_hash: r.get(3)?,
                        totp_secret: r.get(4)?,
                        failures: to_u64(r.get(5)?),
                        locked_until: r.get::<Option<i64>>(6)?.map(to_u64),
                        last_totp_step: r.get::<Option<i64>>(7)?.map(to_u64),
                        revoked: r.get(8)?,
                    })
                },
            )
    }

    /// Every technician, by name.
    pub fn technicians(&mut self) -> StoreResult<Vec<super::Technician>> {
        let names: Vec<String> =
            self.conn
                .rows("SELECT name FROM technicians ORDER BY name", args![], |r| {
                    r.get(0)
                })?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(t) = self.technician(&name)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Every console login, by technician name.
    pub fn console_logins(&mut self) -> StoreResult<Vec<ConsoleLogin>> {
        let names: Vec<String> = self.conn.rows(
            "SELECT technician FROM console_logins ORDER BY technician",
            args![],
            |r| r.get(0),
        )?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(login) = self.console_login(&name)? {
                out.push(login);
            }
        }
        Ok(out)
    }

    /// Counts a failed sign-in; the `max_failures`-th in a row locks the login for
    /// `lock_secs`.
    pub fn console_sign_in_failed(
        &mut self,
        technician: &str,
        max_failures: u64,
        lock_secs: u64,
        now: u64,
    ) -> StoreResult<SignInState> {
        let mut tx = self.write()?;
        let failures: u64 = tx
            .row(
                "UPDATE console_logins SET failures = failures + 1 WHERE technician = ?1 RETURNING failures",
                args![technician],
                |r| r.get::<i64>(0),
            )?
            .map_or(0, to_u64);
        let state = if failures >= max_failures {
            let until = now.saturating_add(lock_secs);
            tx.exec(
                "UPDATE console_logins SET failures = 0, locked_until = ?2 WHERE technician = ?1",
                args![technician, to_i64(until)],
            )?;
            SignInState::Locked { until }
        } else {
            SignInState::Open { failures }
        };
        tx.commit()?;
        Ok(state)
    }

    /// A good sign-in: failures reset, the TOTP step used up.
    pub fn console_sign_in_ok(&mut self, technician: &str, totp_step: u64) -> StoreResult<()> {
        self.conn.exec(
            "UPDATE console_logins SET failures = 0, locked_until = NULL, last_totp_step = ?2 WHERE technician = ?1",
            args![technician, to_i64(totp_step)],
        )?;
        Ok(())
    }

    pub fn console_session_create(
        &mut self,
        token_sha256: &str,
        technician: &str,
        csrf: &str,
        address: &str,
        now: u64,
        expires_at: u64,
    ) -> StoreResult<()> {
        self.conn.exec(
            "INSERT INTO console_sessions (token_sha256, technician, csrf, address, created_at, last_seen, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            args![token_sha256, technician, csrf, address, to_i64(now), to_i64(expires_at)],
        )?;
        Ok(())
    }

    /// The session behind a cookie, if it is live: not past `expires_at`, used within
    /// `idle_secs`, and its technician not revoked. Marks it used now.
    pub fn console_session(
        &mut self,
        token_sha256: &str,
        idle_secs: u64,
        now: u64,
    ) -> StoreResult<Option<ConsoleSession>> {
        let found = self
            .conn
            .row(
                "SELECT s.technician, t.tier, l.admin, s.csrf, s.expires_at \
                 FROM console_sessions s JOIN technicians t ON t.name = s.technician \
                 JOIN console_logins l ON l.technician = s.technician \
                 WHERE s.token_sha256 = ?1 AND s.expires_at > ?2 AND s.last_seen > ?3 AND t.revoked_at IS NULL",
                args![
                    token_sha256,
                    to_i64(now),
                    to_i64(now.saturating_sub(idle_secs))
                ],
                |r| {
                    Ok(ConsoleSession {
                        technician: r.get(0)?,
                        tier: tier_of(&r.get::<String>(1)?),
                        admin: r.get(2)?,
                        csrf: r.get(3)?,
                        expires_at: to_u64(r.get(4)?),
                    })
                },
            )?;
        if found.is_some() {
            self.conn.exec(
                "UPDATE console_sessions SET last_seen = ?2 WHERE token_sha256 = ?1",
                args![token_sha256, to_i64(now)],
            )?;
        }
        Ok(found)
    }

    pub fn console_session_end(&mut self, token_sha256: &str) -> StoreResult<()> {
        self.conn.exec(
            "DELETE FROM console_sessions WHERE token_sha256 = ?1",
            args![token_sha256],
        )?;
        Ok(())
    }

    /// How many live sessions `technician` has.
    pub fn console_session_count(&mut self, technician: &str, now: u64) -> StoreResult<u64> {
        let n: i64 = self.conn.one(
            "SELECT COUNT(*) FROM console_sessions WHERE technician = ?1 AND expires_at > ?2",
            args![technician, to_i64(now)],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    /// The agents-page columns `technician` chose, comma-separated.
    pub fn console_columns(&mut self, technician: &str) -> StoreResult<Option<String>> {
        self.conn.row(
            "SELECT agent_columns FROM console_prefs WHERE technician = ?1",
            args![technician],
            |r| r.get(0),
        )
    }

    pub fn set_console_columns(&mut self, technician: &str, columns: &str) -> StoreResult<()> {
        self.conn.exec(
            "INSERT INTO console_prefs (technician, agent_columns) VALUES (?1, ?2) \
             ON CONFLICT (technician) DO UPDATE SET agent_columns = ?2",
            args![technician, columns],
        )?;
        Ok(())
    }

    /// Remembers the worst finding of an agent's newest snapshot, for the fleet view.
    pub fn set_agent_findings(
        &mut self,
        agent: &str,
        worst: Option<&str>,
        taken_at: u64,
    ) -> StoreResult<()> {
        self.conn.exec(
            "UPDATE agents SET worst_finding = ?2, snapshot_at = ?3 WHERE id = ?1 \
             AND (snapshot_at IS NULL OR snapshot_at <= ?3)",
            args![agent, worst, to_i64(taken_at)],
        )?;
        Ok(())
    }

    /// Every agent, ordered as [`Db::agents`], with its newest snapshot's worst finding
    /// (`critical`, `warning`, `info`, or none) and when it was taken: one read of the
    /// `agents_fleet` covering index, never of the rows with their certificates. The
    /// console's fleet view reads this on every page.
    pub fn fleet(&mut self) -> StoreResult<Vec<FleetAgent>> {
        self.conn.rows(
            &format!(
                "SELECT {}, worst_finding, snapshot_at FROM agents ORDER BY hostname, id",
                Self::AGENT_COLUMNS
            ),
            args![],
            |r| {
                Ok((
                    Self::agent_row(r)?,
                    r.get(8)?,
                    r.get::<Option<i64>>(9)?.map(to_u64),
                ))
            },
        )
    }
}

/// One line of the console's own audit: sign-ins and admin actions (what a technician
/// does to a ticket is on the ticket's timeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    pub at: u64,
    pub technician: String,
    pub action: String,
    pub detail: String,
    pub address: String,
}

impl Db {
    pub fn console_audit(&mut self, line: &AuditLine) -> StoreResult<()> {
        // In a write transaction: two nodes must not compute the same next id.
        let mut tx = self.write()?;
        tx.exec(
            "INSERT INTO console_audit (id, at, technician, action, detail, address) \
             VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM console_audit), ?1, ?2, ?3, ?4, ?5)",
            args![
                to_i64(line.at),
                &line.technician,
                &line.action,
                &line.detail,
                &line.address
            ],
        )?;
        tx.commit()
    }

    /// The newest `limit` audit lines, newest first.
    pub fn console_audit_tail(&mut self, limit: u64) -> StoreResult<Vec<AuditLine>> {
        self.conn.rows(
            "SELECT at, technician, action, detail, address FROM console_audit ORDER BY id DESC LIMIT ?1",
            args![to_i64(limit)],
            |r| {
                Ok(AuditLine {
                    at: to_u64(r.get(0)?),
                    technician: r.get(1)?,
                    action: r.get(2)?,
                    detail: r.get(3)?,
                    address: r.get(4)?,
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `test` on each engine with technician ana added.
    fn with_ana(test: impl Fn(&mut Db) -> anyhow::Result<()>) -> anyhow::Result<()> {
        crate::store::testing::engines(|db| {
            db.insert_technician("ana", Tier::L1)?;
            test(db)
        })
    }

    #[test]
    fn fleet_lists_agents_in_order_with_findings_from_the_covering_index() -> anyhow::Result<()> {
        with_ana(fleet_in_order)
    }

    fn fleet_in_order(db: &mut Db) -> anyhow::Result<()> {
        for (id, host) in [("ag-2", "pc-b"), ("ag-1", "pc-a"), ("ag-3", "pc-b")] {
            db.insert_agent(&crate::store::NewAgent {
                id: id.into(),
                hostname: host.into(),
                os: "Debian".into(),
                cert_sha256: "00".into(),
                cert_pem: "-----BEGIN CERTIFICATE-----".into(),
                cert_not_after: 1,
            })?;
        }
        db.set_agent_findings("ag-3", Some("warning"), 40)?;
        db.set_agent_findings("ag-3", Some("critical"), 30)?; // older: ignored
        let fleet = db.fleet()?;
        let listed: Vec<_> = fleet
            .iter()
            .map(|(a, worst, at)| (a.id.as_str(), worst.as_deref(), *at))
            .collect();
        assert_eq!(
            listed,
            [
                ("ag-1", None, None),
                ("ag-2", None, None),
                ("ag-3", Some("warning"), Some(40))
            ]
        );
        let agents = db.agents()?;
        assert_eq!(
            fleet.into_iter().map(|(a, _, _)| a).collect::<Vec<_>>(),
            agents,
            "the same agents as `agents`, in the same order"
        );
        // SQLite's plan: PostgreSQL chooses by its statistics, not to be pinned here.
        if let crate::store::sql::Conn::Sqlite(conn) = &db.conn {
            let plan: String = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT {}, worst_finding, snapshot_at FROM agents ORDER BY hostname, id",
                    Db::AGENT_COLUMNS
                ))?
                .query_map([], |r| r.get::<_, String>(3))?
                .collect::<Result<Vec<_>, _>>()?
                .join("; ");
            assert!(plan.contains("COVERING INDEX agents_fleet"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        Ok(())
    }

    #[test]
    fn a_setup_link_works_once_and_resets_the_login() -> anyhow::Result<()> {
        with_ana(setup_link_once)
    }

    fn setup_link_once(db: &mut Db) -> anyhow::Result<()> {
        assert!(matches!(
            db.console_add("nobody", false, "x", 100, 1),
            Err(StoreError::NotFound(_))
        ));
        db.console_add("ana", true, "link", 100, 1)?;
        assert_eq!(db.console_setup("link", 50)?.as_deref(), Some("ana"));
        assert_eq!(db.console_setup("link", 100)?, None, "expired");
        assert_eq!(
            db.console_finish_setup("link", "hash", "secret", 7, 50)?
                .as_deref(),
            Some("ana")
        );
        assert_eq!(db.console_finish_setup("link", "h", "s", 7, 50)?, None);
        let login = db.console_login("ana")?.ok_or(anyhow::anyhow!("login"))?;
        assert_eq!(login.password_hash.as_deref(), Some("hash"));
        assert!(login.admin);
        db.console_session_create("tok", "ana", "csrf", "127.0.0.1", 50, 500)?;
        assert!(db.console_session("tok", 60, 60)?.is_some());
        // A new link ends every session and clears the credentials.
        db.console_add("ana", false, "link2", 200, 60)?;
        assert!(db.console_session("tok", 60, 61)?.is_none());
        let login = db.console_login("ana")?.ok_or(anyhow::anyhow!("login"))?;
        assert_eq!(login.password_hash, None);
        Ok(())
    }

    #[test]
    fn sessions_end_when_idle_expired_or_revoked() -> anyhow::Result<()> {
        with_ana(sessions_end)
    }

    fn sessions_end(db: &mut Db) -> anyhow::Result<()> {
        db.console_add("ana", false, "l", 100, 1)?;
        db.console_session_create("a", "ana", "c", "::1", 10, 1000)?;
        assert!(db.console_session("a", 30, 39)?.is_some());
        assert!(db.console_session("a", 30, 70)?.is_none(), "idle");
        db.console_session_create("b", "ana", "c", "::1", 10, 20)?;
        assert!(db.console_session("b", 30, 21)?.is_none(), "expired");
        db.console_session_create("c", "ana", "c", "::1", 100, 1000)?;
        assert_eq!(
            db.console_session_count("ana", 100)?,
            2,
            "a and c; b has expired"
        );
        db.revoke_technician("ana")?;
        assert!(db.console_session("c", 30, 101)?.is_none());
        assert_eq!(db.console_session_count("ana", 100)?, 0);
        Ok(())
    }

    #[test]
    fn repeated_failures_lock_the_login() -> anyhow::Result<()> {
        with_ana(failures_lock)
    }

    fn failures_lock(db: &mut Db) -> anyhow::Result<()> {
        db.console_add("ana", false, "l", 100, 1)?;
        for n in 1..5 {
            assert_eq!(
                db.console_sign_in_failed("ana", 5, 900, 10)?,
                SignInState::Open { failures: n }
            );
        }
        assert_eq!(
            db.console_sign_in_failed("ana", 5, 900, 10)?,
            SignInState::Locked { until: 910 }
        );
        let login = db.console_login("ana")?.ok_or(anyhow::anyhow!("login"))?;
        assert_eq!(login.locked_until, Some(910));
        db.console_sign_in_ok("ana", 3)?;
        let login = db.console_login("ana")?.ok_or(anyhow::anyhow!("login"))?;
        assert_eq!((login.locked_until, login.failures), (None, 0));
        Ok(())
    }
}
