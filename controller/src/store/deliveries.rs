//! Exactly-once recording of what agents deliver: each (agent, idempotency key) is
//! recorded in the same transaction as its effect, so a redelivery — after a lost
//! acknowledgement, a crash on either side — finds the key and records nothing.

use super::db::{Db, to_i64, to_u64};
use super::sql::{Sql, Tx, args};
use super::timeline::append_event;
use super::{NewEvent, NewEvidence, StoreResult};
use crate::clock::now_secs;
use deskside_proto::msg::tech::TimelineEntry;

/// What recording a delivered item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Recorded now, with this timeline entry.
    New(TimelineEntry),
    /// Recorded by an earlier delivery of the same key: on this ticket, this item.
    Duplicate {
        ticket: u64,
        evidence_sha256: Option<String>,
        received_at_secs: u64,
    },
}

/// Claims `(agent, key)` inside `tx`; the earlier record when it was claimed before.
pub(super) fn claim(
    tx: &mut Tx<'_>,
    agent: &str,
    key: &str,
    ticket: u64,
    sha256: Option<&str>,
) -> StoreResult<Option<Delivered>> {
    let inserted = tx.exec(
        "INSERT INTO deliveries (agent_id, key, ticket, evidence_sha256, received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (agent_id, key) DO NOTHING",
        args![agent, key, to_i64(ticket), sha256, to_i64(now_secs())],
    )?;
    if inserted == 1 {
        return Ok(None);
    }
    tx.row(
        "SELECT ticket, evidence_sha256, received_at FROM deliveries WHERE agent_id = ?1 AND key = ?2",
        args![agent, key],
        |r| {
            Ok(Delivered::Duplicate {
                ticket: to_u64(r.get(0)?),
                evidence_sha256: r.get(1)?,
                received_at_secs: to_u64(r.get(2)?),
            })
        },
    )
}

impl Db {
    /// [`Db::add_evidence`] for an item an agent delivered under `key`: recorded once
    /// however often it arrives. The blob must already be durable.
    pub fn add_delivered_evidence(
        &mut self,
        agent: &str,
        key: &str,
        number: u64,
        item: &NewEvidence,
        event: &NewEvent<'_>,
    ) -> StoreResult<Delivered> {
        let mut tx = self.write()?;
        if let Some(earlier) = claim(&mut tx, agent, key, number, Some(&item.sha256))? {
            return Ok(earlier);
        }
        super::timeline::insert_evidence(&mut tx, number, item)?;
        let entry = append_event(&mut tx, number, event)?;
        tx.commit()?;
        Ok(Delivered::New(entry))
    }

    /// Several items an agent delivered together under `key` (a collected file and its
    /// signed manifest), each with its timeline entry, in one transaction: all or none.
    /// The first item names the delivery. Every blob must already be durable.
    pub fn add_delivered_evidence_set(
        &mut self,
        agent: &str,
        key: &str,
        number: u64,
        items: &[(NewEvidence, NewEvent<'_>)],
    ) -> StoreResult<Delivered> {
        let mut tx = self.write()?;
        let first = items.first().map(|(e, _)| e.sha256.as_str());
        if let Some(earlier) = claim(&mut tx, agent, key, number, first)? {
            return Ok(earlier);
        }
        let mut last = None;
        for (item, event) in items {
            super::timeline::insert_evidence(&mut tx, number, item)?;
            last = Some(append_event(&mut tx, number, event)?);
        }
        let Some(entry) = last else {
            return Err(super::StoreError::Conflict(
                "a delivery with no items records nothing".into(),
            ));
        };
        tx.commit()?;
        Ok(Delivered::New(entry))
    }

    /// Appends `event` for a notice an agent delivered under `key`, once.
    pub fn add_delivered_event(
        &mut self,
        agent: &str,
        key: &str,
        number: u64,
        event: &NewEvent<'_>,
    ) -> StoreResult<Delivered> {
        let mut tx = self.write()?;
        if let Some(earlier) = claim(&mut tx, agent, key, number, None)? {
            return Ok(earlier);
        }
        let entry = append_event(&mut tx, number, event)?;
        tx.commit()?;
        Ok(Delivered::New(entry))
    }

    /// How many deliveries from `agent` are recorded (for status and tests).
    pub fn delivery_count(&mut self, agent: &str) -> StoreResult<u64> {
        let n: i64 = self.conn.one(
            "SELECT COUNT(*) FROM deliveries WHERE agent_id = ?1",
            args![agent],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewTicket;
    use crate::store::testing::engines;
    use deskside_proto::msg::identity::Tier;

    fn with_ticket(db: &mut Db) -> anyhow::Result<u64> {
        Ok(db.create_ticket(&NewTicket {
            title: "printer",
            requester: "",
            priority: "normal",
            agent: None,
            by: "alice",
            tier: Tier::L1,
        })?)
    }

    fn evidence(sha: &str) -> NewEvidence {
        NewEvidence {
            sha256: sha.to_owned(),
            kind: deskside_proto::evidence::EvidenceKind::Snapshot,
            size_bytes: 10,
            agent_id: Some("ag-1".into()),
            signature: None,
            redaction: Vec::new(),
        }
    }

    fn event() -> NewEvent<'static> {
        NewEvent {
            actor: "alice",
            kind: "snapshot",
            detail: "d",
            evidence_sha256: None,
        }
    }

    #[test]
    fn a_redelivered_item_is_recorded_once() -> anyhow::Result<()> {
        engines(redelivered_once)
    }

    fn redelivered_once(db: &mut Db) -> anyhow::Result<()> {
        let t = with_ticket(db)?;
        let sha = "ab".repeat(32);
        let first = db.add_delivered_evidence("ag-1", "k1", t, &evidence(&sha), &event());
        assert!(matches!(first, Ok(Delivered::New(_))), "{first:?}");
        let again = db.add_delivered_evidence("ag-1", "k1", t, &evidence(&sha), &event());
        match again {
            Ok(Delivered::Duplicate {
                ticket,
                evidence_sha256,
                ..
            }) => {
                assert_eq!(ticket, t);
                assert_eq!(evidence_sha256.as_deref(), Some(sha.as_str()));
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
        let timeline = db.timeline(t).unwrap_or_else(|e| panic!("{e}"));
        let events = timeline.iter().filter(|e| e.kind == "snapshot").count();
        assert_eq!(events, 1, "one timeline entry for two deliveries");
        assert_eq!(db.delivery_count("ag-1").ok(), Some(1));
        Ok(())
    }

    #[test]
    fn keys_are_per_agent() -> anyhow::Result<()> {
        engines(per_agent)
    }

    fn per_agent(db: &mut Db) -> anyhow::Result<()> {
        let t = with_ticket(db)?;
        let a = db.add_delivered_event("ag-1", "k", t, &event());
        let b = db.add_delivered_event("ag-2", "k", t, &event());
        assert!(matches!(a, Ok(Delivered::New(_))), "{a:?}");
        assert!(matches!(b, Ok(Delivered::New(_))), "{b:?}");
        let c = db.add_delivered_event("ag-2", "k", t, &event());
        assert!(matches!(c, Ok(Delivered::Duplicate { .. })), "{c:?}");
        Ok(())
    }

    #[test]
    fn a_failed_effect_does_not_claim_the_key() -> anyhow::Result<()> {
        engines(failed_effect)
    }

    fn failed_effect(db: &mut Db) -> anyhow::Result<()> {
        with_ticket(db)?;
        // No ticket 999: the event insert fails, so the claim rolls back with it.
        let missing = db.add_delivered_event("ag-1", "k", 999, &event());
        assert!(missing.is_err(), "{missing:?}");
        assert_eq!(db.delivery_count("ag-1").ok(), Some(0));
        Ok(())
    }
}
