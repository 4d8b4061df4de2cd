//! Which tickets a technician may see. One rule, applied to every per-ticket request and
//! to the ticket list: a technician sees a ticket when their tier is at least the
//! ticket's (l1 < l2 < l3), or they opened it, own it, or act on its timeline.
//!
//! A ticket the technician may not see is answered exactly like a missing one, so the
//! reply does not tell them it exists.

use super::db::{Db, to_i64};
use super::sql::{Sql, args};
use super::tickets::{TICKET_SELECT, ticket_row};
use super::{StoreError, StoreResult};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::TicketSummary;

/// Tier order in SQL; a tier the controller does not know ranks lowest, as when parsing.
const VISIBLE: &str = "((CASE t.tier WHEN 'l3' THEN 3 WHEN 'l2' THEN 2 ELSE 1 END) <= ?2 \
     OR t.created_by = ?1 OR t.owner = ?1 \
     OR EXISTS (SELECT 1 FROM timeline e WHERE e.ticket = t.number AND e.actor = ?1))";

fn rank(tier: Tier) -> i64 {
    match tier {
        Tier::L1 => 1,
        Tier::L2 => 2,
        Tier::L3 => 3,
    }
}

/// The reply for a ticket that is missing or that `technician` may not see.
pub fn not_visible(number: u64, technician: &str) -> StoreError {
    StoreError::NotFound(format!(
        "no ticket #{number} visible to technician {technician}; `deskside ticket list` shows the ones you can see"
    ))
}

impl Db {
    /// Ticket `number` if `technician` (of `tier`) may see it; a missing and an invisible
    /// ticket give the same [`StoreError::NotFound`].
    pub fn visible_ticket(
        &mut self,
        number: u64,
        technician: &str,
        tier: Tier,
    ) -> StoreResult<TicketSummary> {
        self.conn
            .row(
                &format!("{TICKET_SELECT} WHERE t.number = ?3 AND {VISIBLE}"),
                args![technician, rank(tier), to_i64(number)],
                ticket_row,
            )?
            .ok_or_else(|| not_visible(number, technician))
    }

    /// Every ticket `technician` (of `tier`) may see, by number.
    pub fn visible_tickets(
        &mut self,
        technician: &str,
        tier: Tier,
    ) -> StoreResult<Vec<TicketSummary>> {
        self.conn.rows(
            &format!("{TICKET_SELECT} WHERE {VISIBLE} ORDER BY t.number"),
            args![technician, rank(tier)],
            ticket_row,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewEvent, NewTicket};

    fn open(db: &mut Db, by: &str, tier: Tier) -> StoreResult<u64> {
        db.create_ticket(&NewTicket {
            title: "vpn",
            requester: "",
            priority: "normal",
            agent: None,
            by,
            tier,
        })
    }

    fn numbers(db: &mut Db, name: &str, tier: Tier) -> StoreResult<Vec<u64>> {
        Ok(db
            .visible_tickets(name, tier)?
            .iter()
            .map(|t| t.number)
            .collect())
    }

    #[test]
    fn tier_creator_owner_and_actor_see_a_ticket_others_do_not() -> anyhow::Result<()> {
        crate::store::testing::engines(who_sees)
    }

    fn who_sees(db: &mut Db) -> anyhow::Result<()> {
        let low = open(db, "alice", Tier::L1)?;
        let high = open(db, "carol", Tier::L3)?;
        db.escalate(low, Tier::L2, "needs a desktop engineer", "alice")?;

        // Tier rank: an l3 sees everything, an unrelated l1 nothing above l1.
        assert_eq!(numbers(db, "zed", Tier::L3)?, vec![low, high]);
        assert_eq!(numbers(db, "bob", Tier::L1)?, Vec::<u64>::new());
        // The creator keeps seeing the ticket after escalating it.
        assert_eq!(numbers(db, "alice", Tier::L1)?, vec![low]);
        assert!(db.visible_ticket(low, "alice", Tier::L1).is_ok());

        // Acting on the timeline makes it visible.
        db.add_event(
            high,
            &NewEvent {
                actor: "bob",
                kind: "note",
                detail: "called the user back",
                evidence_sha256: None,
            },
        )?;
        assert_eq!(numbers(db, "bob", Tier::L1)?, vec![high]);

        // Invisible and missing look the same.
        let invisible = db
            .visible_ticket(low, "bob", Tier::L1)
            .err()
            .map(|e| e.to_string());
        let missing = db
            .visible_ticket(99, "bob", Tier::L1)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            invisible.map(|m| m.replace(&format!("#{low}"), "#N")),
            missing.map(|m| m.replace("#99", "#N"))
        );
        Ok(())
    }
}
