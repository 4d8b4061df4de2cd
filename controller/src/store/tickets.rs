//! Tickets: opening one, reading them, and their lifecycle (escalation, resolution,
//! sync state). Their timeline and evidence are in `timeline.rs`.

use super::db::{Db, to_i64, to_u64};
use super::sql::{Row, Sql, args};
use super::timeline::append_event;
use super::{NewEvent, StoreError, StoreResult};
use crate::clock::now_secs;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{Sla, TicketSummary, TimelineEntry};

/// Ticket priorities, lowest first.
pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

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

pub(super) fn ticket_row(r: &Row<'_>) -> StoreResult<TicketSummary> {
    Ok(TicketSummary {
        number: to_u64(r.get(0)?),
        title: r.get(1)?,
        status: r.get(2)?,
        tier: parse_tier(&r.get::<String>(3)?),
        agent: r.get(4)?,
        created_by: r.get(5)?,
        created_at_secs: to_u64(r.get(6)?),
        evidence_count: u32::try_from(r.get::<i64>(7)?).unwrap_or(u32::MAX),
        priority: r.get(8)?,
        requester: r.get(9)?,
        owner: r.get(10)?,
        first_response_at_secs: r.get::<Option<i64>>(11)?.map(to_u64),
        resolved_at_secs: r.get::<Option<i64>>(12)?.map(to_u64),
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
        let mut tx = self.write()?;
        let number: i64 = tx.one(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM tickets",
            args![],
            |r| r.get(0),
        )?;
        tx.exec(
            "INSERT INTO tickets (number, title, status, tier, agent_id, created_by, created_at, requester, priority, owner) \
             VALUES (?1, ?2, 'new', ?3, ?4, ?5, ?6, ?7, ?8, ?5)",
            args![number, t.title, t.tier.as_str(), t.agent, t.by, to_i64(now_secs()), t.requester, t.priority],
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
            &mut tx,
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
        self.conn.rows(
            &format!("{TICKET_SELECT} ORDER BY t.number"),
            args![],
            ticket_row,
        )
    }

    pub fn ticket(&mut self, number: u64) -> StoreResult<TicketSummary> {
        self.conn
            .row(
                &format!("{TICKET_SELECT} WHERE t.number = ?1"),
                args![to_i64(number)],
                ticket_row,
            )?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "no ticket #{number}; `deskside ticket list` shows them"
                ))
            })
    }

    /// Moves the ticket to the next tier: L1 → L2 → L3 only, never down or sideways.
    pub fn escalate(
        &mut self,
        number: u64,
        to: Tier,
        note: &str,
        by: &str,
    ) -> StoreResult<(Tier, TimelineEntry)> {
        let mut tx = self.write()?;
        let (from, status): (String, String) = tx
            .row(
                "SELECT tier, status FROM tickets WHERE number = ?1",
                args![to_i64(number)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
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
        tx.exec(
            "UPDATE tickets SET tier = ?2, status = 'escalated', owner = NULL WHERE number = ?1",
            args![to_i64(number), to.as_str()],
        )?;
        let detail = format!("escalated from {from} to {to} by {by}: {note}");
        let entry = append_event(
            &mut tx,
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
        let mut tx = self.write()?;
        let changed = tx.exec(
            "UPDATE tickets SET status = 'resolved', resolved_at = ?2 WHERE number = ?1 AND status <> 'resolved'",
            args![to_i64(number), to_i64(now_secs())],
        )?;
        if changed == 0 {
            let exists: bool = tx.one(
                "SELECT EXISTS (SELECT 1 FROM tickets WHERE number = ?1)",
                args![to_i64(number)],
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
            &mut tx,
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
        self.conn.exec(
            "UPDATE tickets SET sync_state = ?2, external_ref = COALESCE(?3, external_ref) WHERE number = ?1",
            args![to_i64(number), state, external_ref],
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::testing::engines;

    pub(in crate::store) fn open(db: &mut Db) -> StoreResult<u64> {
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
    fn lifecycle_first_response_escalation_and_resolution() -> anyhow::Result<()> {
        engines(lifecycle)
    }

    fn lifecycle(db: &mut Db) -> anyhow::Result<()> {
        let n = open(db)?;
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
        engines(unknown_priorities)
    }

    fn unknown_priorities(db: &mut Db) -> anyhow::Result<()> {
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
