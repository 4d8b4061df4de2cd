//! Which controller node holds each agent's connection: written when an agent's
//! connection is registered, cleared when that connection ends, read to route a request
//! for an agent held by another node.

use super::StoreResult;
use super::db::{Db, to_i64, to_u64};
use super::sql::{Sql, args};

/// Where an agent is connected, as the table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLocation {
    pub agent_id: String,
    /// The node's name (`[cluster] node`).
    pub node: String,
    /// When that connection was registered, in Unix milliseconds; also what tells this
    /// connection's row from a newer one's.
    pub connected_at_ms: u64,
}

impl Db {
    /// Agent `agent` is now connected to `node` (a newer connection, on any node, wins).
    pub fn set_agent_location(
        &mut self,
        agent: &str,
        node: &str,
        connected_at_ms: u64,
    ) -> StoreResult<()> {
        self.conn.exec(
            "INSERT INTO agent_location (agent_id, node, connected_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (agent_id) DO UPDATE SET node = excluded.node, connected_at = excluded.connected_at",
            args![agent, node, to_i64(connected_at_ms)],
        )?;
        Ok(())
    }

    /// The connection of `agent` registered on `node` at `connected_at_ms` ended: forgets
    /// the row only if it still names that connection (the agent may already be back, on
    /// this node or another). Returns whether a row went.
    pub fn clear_agent_location(
        &mut self,
        agent: &str,
        node: &str,
        connected_at_ms: u64,
    ) -> StoreResult<bool> {
        let n = self.conn.exec(
            "DELETE FROM agent_location WHERE agent_id = ?1 AND node = ?2 AND connected_at = ?3",
            args![agent, node, to_i64(connected_at_ms)],
        )?;
        Ok(n > 0)
    }

    /// Forgets every row naming `node`: it starts afresh, so none of its agents is
    /// connected to it now.
    pub fn clear_node_locations(&mut self, node: &str) -> StoreResult<usize> {
        let n = self
            .conn
            .exec("DELETE FROM agent_location WHERE node = ?1", args![node])?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Where `agent` is connected, if anywhere.
    pub fn agent_location(&mut self, agent: &str) -> StoreResult<Option<AgentLocation>> {
        self.conn.row(
            "SELECT node, connected_at FROM agent_location WHERE agent_id = ?1",
            args![agent],
            |r| {
                Ok(AgentLocation {
                    agent_id: agent.to_owned(),
                    node: r.get(0)?,
                    connected_at_ms: to_u64(r.get(1)?),
                })
            },
        )
    }

    /// Every agent connected to a node other than `node`, with its node.
    pub fn agent_locations_elsewhere(&mut self, node: &str) -> StoreResult<Vec<(String, String)>> {
        self.conn.rows(
            "SELECT agent_id, node FROM agent_location WHERE node <> ?1",
            args![node],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_cleared_only_by_the_connection_it_names() -> anyhow::Result<()> {
        crate::store::testing::engine_pairs(cleared_only_by_its_connection)
    }

    fn cleared_only_by_its_connection(db: &mut Db, other: &mut Db) -> anyhow::Result<()> {
        db.set_agent_location("ag-1", "ctl-a", 100)?;
        // The agent came back to node b before node a saw its old connection end.
        other.set_agent_location("ag-1", "ctl-b", 200)?;
        assert!(!db.clear_agent_location("ag-1", "ctl-a", 100)?);
        let at = db.agent_location("ag-1")?;
        assert_eq!(
            at.map(|l| (l.node, l.connected_at_ms)),
            Some(("ctl-b".into(), 200))
        );
        // A newer connection on the same node is not cleared by the older one's end.
        db.set_agent_location("ag-1", "ctl-b", 300)?;
        assert!(!db.clear_agent_location("ag-1", "ctl-b", 200)?);
        assert!(other.clear_agent_location("ag-1", "ctl-b", 300)?);
        assert_eq!(db.agent_location("ag-1")?, None);
        Ok(())
    }

    #[test]
    fn a_restarted_node_forgets_its_rows_and_others_are_listed_by_node() -> anyhow::Result<()> {
        crate::store::testing::engines(forgets_and_lists)
    }

    fn forgets_and_lists(db: &mut Db) -> anyhow::Result<()> {
        db.set_agent_location("ag-1", "ctl-a", 1)?;
        db.set_agent_location("ag-2", "ctl-b", 1)?;
        db.set_agent_location("ag-3", "ctl-c", 1)?;
        let mut elsewhere = db.agent_locations_elsewhere("ctl-a")?;
        elsewhere.sort();
        assert_eq!(
            elsewhere,
            vec![
                ("ag-2".to_owned(), "ctl-b".to_owned()),
                ("ag-3".to_owned(), "ctl-c".to_owned())
            ]
        );
        assert_eq!(db.clear_node_locations("ctl-b")?, 1);
        assert_eq!(db.agent_location("ag-2")?, None);
        assert!(db.agent_location("ag-3")?.is_some());
        Ok(())
    }
}
