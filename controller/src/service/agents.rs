//! The agents technicians can see.

use deskside_proto::msg::tech::AgentSummary;

use super::common::{Failure, Principal, Shared, admit};

/// Every enrolled agent, with whether it can be asked now.
pub(crate) async fn list(shared: &Shared, who: &Principal) -> Result<Vec<AgentSummary>, Failure> {
    admit(shared, who, None).await?;
    let mut agents = shared.store.run(|db| db.agents()).await?;
    for a in &mut agents {
        a.online = shared.agents.is_online(&a.id);
    }
    Ok(agents)
}

/// An agent with what the fleet view filters on.
#[derive(Debug, Clone)]
pub(crate) struct FleetRow {
    pub agent: AgentSummary,
    /// The worst finding of its newest snapshot (`critical`, `warning`, `info`), if any.
    pub worst_finding: Option<String>,
    pub snapshot_at_secs: Option<u64>,
}

/// Every enrolled agent with its newest snapshot's worst finding.
pub(crate) async fn fleet(shared: &Shared, who: &Principal) -> Result<Vec<FleetRow>, Failure> {
    admit(shared, who, None).await?;
    let rows = shared.store.run(|db| db.fleet()).await?;
    Ok(rows
        .into_iter()
        .map(|(mut agent, worst_finding, snapshot_at_secs)| {
            agent.online = shared.agents.is_online(&agent.id);
            FleetRow {
                agent,
                worst_finding,
                snapshot_at_secs,
            }
        })
        .collect())
}

/// Snapshots shown for one agent.
pub(crate) const MAX_SNAPSHOTS_LISTED: u64 = 50;

/// One agent (by id or unique hostname) and its newest snapshots on tickets `who` may
/// see, newest first, as `(ticket, evidence)`.
pub(crate) async fn snapshots(
    shared: &Shared,
    who: &Principal,
    key: &str,
) -> Result<
    (
        AgentSummary,
        Vec<(u64, deskside_proto::msg::tech::EvidenceRef)>,
    ),
    Failure,
> {
    admit(shared, who, None).await?;
    let (key, name, tier) = (key.to_owned(), who.name.clone(), who.tier);
    let (mut agent, items) = shared
        .store
        .run(move |db| {
            let agent = db.find_agent(&key)?;
            let mut visible = Vec::new();
            for (ticket, item) in db.agent_snapshots(&agent.id, MAX_SNAPSHOTS_LISTED)? {
                if db.visible_ticket(ticket, &name, tier).is_ok() {
                    visible.push((ticket, item));
                }
            }
            Ok((agent, visible))
        })
        .await?;
    agent.online = shared.agents.is_online(&agent.id);
    Ok((agent, items))
}
