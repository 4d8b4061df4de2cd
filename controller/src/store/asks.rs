//! Tickets a machine's user opens by asking for help: the ticket, its evidence and their
//! timeline entries in one transaction, recorded once per delivery key, and at most
//! [`NewAsk::max_per_window`] per machine in a window.

use super::db::{Db, to_i64, to_u64};
use super::deliveries::claim;
use super::sql::{Sql, args};
use super::timeline::{append_event, insert_evidence};
use super::{Delivered, NewEvent, NewEvidence, StoreResult};

/// A ticket to open for an agent's user.
#[derive(Debug, Clone)]
pub struct NewAsk<'a> {
    pub agent: &'a str,
    /// The delivery's idempotency key.
    pub key: &'a str,
    pub title: &'a str,
    /// `alice@pc-0042`.
    pub requester: &'a str,
    /// Who the timeline names as acting (`agent pc-0042`); also marks the ticket as
    /// opened from the machine, which the rate limit counts.
    pub by: &'a str,
    /// The user's words, the ticket's first entry after its opening.
    pub text: &'a str,
    /// Each item with its timeline kind and text. Every blob must already be durable.
    pub items: Vec<(NewEvidence, &'static str, String)>,
    pub max_per_window: u32,
    pub window_secs: u64,
    pub now_secs: u64,
}

/// What asking did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskOutcome {
    Opened(u64),
    /// This delivery opened that ticket before.
    Again(u64),
    /// The machine asked `max_per_window` times in the window: it may ask again at
    /// `retry_at_secs`.
    Limited {
        retry_at_secs: u64,
    },
}

impl Db {
    pub fn open_asked_ticket(&mut self, ask: &NewAsk<'_>) -> StoreResult<AskOutcome> {
        let mut tx = self.write()?;
        let earlier: Option<i64> = tx.row(
            "SELECT ticket FROM deliveries WHERE agent_id = ?1 AND key = ?2",
            args![ask.agent, ask.key],
            |r| r.get(0),
        )?;
        if let Some(number) = earlier {
            return Ok(AskOutcome::Again(to_u64(number)));
        }
        let since = ask.now_secs.saturating_sub(ask.window_secs);
        let mut recent: Vec<u64> = tx.rows(
            "SELECT created_at FROM tickets WHERE agent_id = ?1 AND created_by = ?2 AND created_at > ?3 ORDER BY created_at",
            args![ask.agent, ask.by, to_i64(since)],
            |r| Ok(to_u64(r.get(0)?)),
        )?;
        if recent.len() >= ask.max_per_window as usize {
            let skip = recent.len() - ask.max_per_window as usize;
            recent.drain(..skip);
            let oldest = recent.first().copied().unwrap_or(ask.now_secs);
            return Ok(AskOutcome::Limited {
                retry_at_secs: oldest + ask.window_secs + 1,
            });
        }
        let number: i64 = tx.one(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM tickets",
            args![],
            |r| r.get(0),
        )?;
        // Unowned (NULL owner) until a technician takes it; the lowest tier, so every
        // technician sees it in `ticket list`.
        tx.exec(
            "INSERT INTO tickets (number, title, status, tier, agent_id, created_by, created_at, requester, priority, owner) \
             VALUES (?1, ?2, 'new', 'l1', ?3, ?4, ?5, ?6, 'normal', NULL)",
            args![number, ask.title, ask.agent, ask.by, to_i64(ask.now_secs), ask.requester],
        )?;
        let number = to_u64(number);
        let first = ask.items.first().map(|(e, _, _)| e.sha256.as_str());
        if let Some(Delivered::Duplicate { ticket, .. }) =
            claim(&mut tx, ask.agent, ask.key, number, first)?
        {
            return Ok(AskOutcome::Again(ticket));
        }
        let opened = format!(
            "ticket opened: {} (priority normal, reported by {}, agent {})",
            ask.title, ask.requester, ask.agent
        );
        let said = format!("{} asked for help: {}", ask.requester, ask.text);
        for (kind, detail) in [("created", opened.as_str()), ("asked", said.as_str())] {
            append_event(
                &mut tx,
                number,
                &NewEvent {
                    actor: ask.by,
                    kind,
                    detail,
                    evidence_sha256: None,
                },
            )?;
        }
        for (item, kind, detail) in &ask.items {
            insert_evidence(&mut tx, number, item)?;
            append_event(
                &mut tx,
                number,
                &NewEvent {
                    actor: ask.by,
                    kind,
                    detail,
                    evidence_sha256: Some(&item.sha256),
                },
            )?;
        }
        tx.commit()?;
        Ok(AskOutcome::Opened(number))
    }
}

#[cfg(test)]
mod tests {
    use deskside_proto::evidence::EvidenceKind;

    use super::*;

    fn ask<'a>(key: &'a str, now_secs: u64) -> NewAsk<'a> {
        NewAsk {
            agent: "pc-1",
            key,
            title: "printer prints nothing",
            requester: "alice@pc-1",
            by: "agent pc-1",
            text: "printer prints nothing",
            items: vec![(
                NewEvidence {
                    sha256: format!("{:064x}", now_secs),
                    kind: EvidenceKind::Snapshot,
                    size_bytes: 2,
                    agent_id: Some("pc-1".into()),
                    signature: Some("00".into()),
                    redaction: Vec::new(),
                },
                "snapshot",
                "snapshot".into(),
            )],
            max_per_window: 3,
            window_secs: 3600,
            now_secs,
        }
    }

    #[test]
    fn an_ask_opens_one_ticket_per_key_and_the_fourth_in_an_hour_is_limited() -> anyhow::Result<()>
    {
        crate::store::testing::engines(opens_per_key_and_limits)
    }

    fn opens_per_key_and_limits(db: &mut Db) -> anyhow::Result<()> {
        let first = db.open_asked_ticket(&ask("k1", 10_000))?;
        assert_eq!(first, AskOutcome::Opened(1));
        assert_eq!(
            db.open_asked_ticket(&ask("k1", 10_001))?,
            AskOutcome::Again(1)
        );
        let t = db.ticket(1)?;
        assert_eq!(
            (t.requester.as_str(), t.agent.as_deref(), t.evidence_count),
            ("alice@pc-1", Some("pc-1"), 1)
        );
        assert_eq!(
            db.open_asked_ticket(&ask("k2", 10_100))?,
            AskOutcome::Opened(2)
        );
        assert_eq!(
            db.open_asked_ticket(&ask("k3", 10_200))?,
            AskOutcome::Opened(3)
        );
        assert_eq!(
            db.open_asked_ticket(&ask("k4", 10_300))?,
            AskOutcome::Limited {
                retry_at_secs: 13_601
            }
        );
        assert_eq!(
            db.open_asked_ticket(&ask("k4", 13_601))?,
            AskOutcome::Opened(4)
        );
        Ok(())
    }
}
