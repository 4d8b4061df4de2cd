//! Cluster state in the store: each node's heartbeat row, and the leases that let one
//! node at a time do the work that must happen once.

use super::StoreResult;
use super::db::{Db, to_i64, to_u64};
use super::sql::{Sql, args};

/// One node's heartbeat row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    /// Its QUIC address as it reported it.
    pub address: String,
    pub started_at: u64,
    pub heartbeat_at: u64,
    pub agents_online: u64,
    pub version: String,
}

impl Db {
    /// Writes `node`'s heartbeat (creating its row on its first).
    pub fn node_beat(&mut self, node: &NodeRow) -> StoreResult<()> {
        self.conn.exec(
            "INSERT INTO nodes (name, address, started_at, heartbeat_at, agents_online, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (name) DO UPDATE SET address = excluded.address, \
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
             agents_online = excluded.agents_online, version = excluded.version",
            args![
                &node.name,
                &node.address,
                to_i64(node.started_at),
                to_i64(node.heartbeat_at),
                to_i64(node.agents_online),
                &node.version
            ],
        )?;
        Ok(())
    }

    /// Every node that ever beat, by name.
    pub fn nodes(&mut self) -> StoreResult<Vec<NodeRow>> {
        self.conn.rows(
            "SELECT name, address, started_at, heartbeat_at, agents_online, version \
             FROM nodes ORDER BY name",
            args![],
            |r| {
                Ok(NodeRow {
                    name: r.get(0)?,
                    address: r.get(1)?,
                    started_at: to_u64(r.get(2)?),
                    heartbeat_at: to_u64(r.get(3)?),
                    agents_online: to_u64(r.get(4)?),
                    version: r.get(5)?,
                })
            },
        )
    }

    /// Takes lease `name` for `holder` until `now + ttl_secs`, or renews it: succeeds when
    /// nobody holds it, `holder` already does, or the holder's term is over. Returns
    /// whether `holder` holds it now. One transaction, so two nodes never both win.
    pub fn lease_take(
        &mut self,
        name: &str,
        holder: &str,
        now: u64,
        ttl_secs: u64,
    ) -> StoreResult<bool> {
        let until = to_i64(now.saturating_add(ttl_secs));
        let mut tx = self.write()?;
        let mut held = tx.exec(
            "UPDATE leases SET holder = ?2, expires_at = ?3 \
             WHERE name = ?1 AND (holder = ?2 OR expires_at < ?4)",
            args![name, holder, until, to_i64(now)],
        )? == 1;
        if !held {
            held = tx.exec(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO NOTHING",
                args![name, holder, until],
            )? == 1;
        }
        tx.commit()?;
        Ok(held)
    }

    /// Gives lease `name` up if `holder` has it (a node stopping cleanly), so another
    /// takes the work over at its next pass rather than after the term.
    pub fn lease_release(&mut self, name: &str, holder: &str) -> StoreResult<()> {
        self.conn.exec(
            "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
            args![name, holder],
        )?;
        Ok(())
    }

    /// Who holds lease `name` and until when, if anyone ever took it.
    pub fn lease_holder(&mut self, name: &str) -> StoreResult<Option<(String, u64)>> {
        self.conn.row(
            "SELECT holder, expires_at FROM leases WHERE name = ?1",
            args![name],
            |r| Ok((r.get::<String>(0)?, to_u64(r.get(1)?))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::testing::engine_pairs;

    #[test]
    fn one_holder_at_a_time_and_the_holder_renews() -> anyhow::Result<()> {
        engine_pairs(holder_renews)
    }

    fn holder_renews(a: &mut Db, b: &mut Db) -> anyhow::Result<()> {
        // Two connections to one database file, as two nodes on one store.
        assert!(a.lease_take("outbox", "ctl-a", 1000, 15)?);
        assert!(!b.lease_take("outbox", "ctl-b", 1001, 15)?);
        assert!(a.lease_take("outbox", "ctl-a", 1010, 15)?, "renewal");
        // Still held: the renewal moved the term to 1025.
        assert!(!b.lease_take("outbox", "ctl-b", 1020, 15)?);
        assert_eq!(b.lease_holder("outbox")?, Some(("ctl-a".into(), 1025)));
        // Other work is a separate lease.
        assert!(b.lease_take("housekeeping", "ctl-b", 1020, 15)?);
        Ok(())
    }

    #[test]
    fn another_node_takes_over_once_the_term_is_over() -> anyhow::Result<()> {
        engine_pairs(takes_over)
    }

    fn takes_over(a: &mut Db, b: &mut Db) -> anyhow::Result<()> {
        assert!(a.lease_take("outbox", "ctl-a", 1000, 15)?);
        // ctl-a died: no renewal. At the end of the term it is still ctl-a's…
        assert!(!b.lease_take("outbox", "ctl-b", 1015, 15)?);
        // …and just after, ctl-b's.
        assert!(b.lease_take("outbox", "ctl-b", 1016, 15)?);
        // ctl-a coming back does not take it back while ctl-b renews.
        assert!(!a.lease_take("outbox", "ctl-a", 1020, 15)?);
        assert_eq!(a.lease_holder("outbox")?.map(|h| h.0), Some("ctl-b".into()));
        Ok(())
    }

    #[test]
    fn a_released_lease_is_free_at_once_but_only_its_holder_releases_it() -> anyhow::Result<()> {
        engine_pairs(released)
    }

    fn released(a: &mut Db, b: &mut Db) -> anyhow::Result<()> {
        assert!(a.lease_take("outbox", "ctl-a", 1000, 15)?);
        b.lease_release("outbox", "ctl-b")?;
        assert!(!b.lease_take("outbox", "ctl-b", 1001, 15)?);
        a.lease_release("outbox", "ctl-a")?;
        assert!(b.lease_take("outbox", "ctl-b", 1001, 15)?);
        Ok(())
    }

    #[test]
    fn heartbeats_update_one_row_per_node() -> anyhow::Result<()> {
        engine_pairs(heartbeats)
    }

    fn heartbeats(a: &mut Db, b: &mut Db) -> anyhow::Result<()> {
        let row = |name: &str, at: u64, agents: u64| NodeRow {
            name: name.into(),
            address: "127.0.0.1:4433".into(),
            started_at: 1,
            heartbeat_at: at,
            agents_online: agents,
            version: "0.1.0".into(),
        };
        a.node_beat(&row("ctl-a", 10, 3))?;
        b.node_beat(&row("ctl-b", 11, 0))?;
        a.node_beat(&row("ctl-a", 15, 4))?;
        assert_eq!(b.nodes()?, vec![row("ctl-a", 15, 4), row("ctl-b", 11, 0)]);
        Ok(())
    }
}
