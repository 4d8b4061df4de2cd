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
