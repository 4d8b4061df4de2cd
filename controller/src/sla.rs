//! Service levels: response and resolution targets per priority, from `[sla]` in the
//! controller's config file (defaults below), and the due/breached view of a ticket.

use std::collections::HashMap;
use std::time::Duration;

use deskside_proto::msg::tech::{Sla, TicketSummary};
use serde::Deserialize;

use crate::store::PRIORITIES;

/// Targets for one priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub response: Duration,
    pub resolution: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaConfig {
    targets: HashMap<&'static str, Target>,
}

const H: u64 = 3600;

impl Default for SlaConfig {
    /// Common help-desk defaults: urgent 15 min / 4 h, high 1 h / 8 h, normal 4 h / 3 days,
    /// low 1 day / 7 days.
    fn default() -> Self {
        let t = |r: u64, s: u64| Target {
            response: Duration::from_secs(r),
            resolution: Duration::from_secs(s),
        };
        SlaConfig {
            targets: HashMap::from([
                ("urgent", t(H / 4, 4 * H)),
                ("high", t(H, 8 * H)),
                ("normal", t(4 * H, 72 * H)),
                ("low", t(24 * H, 168 * H)),
            ]),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetToml {
    response: String,
    resolution: String,
}

impl SlaConfig {
    /// Parses the `[sla]` table: `[sla.high] response = "1h", resolution = "8h"`.
    pub fn from_table(table: &toml::Table) -> Result<SlaConfig, String> {
        let mut config = SlaConfig::default();
        for (priority, value) in table {
            let key = PRIORITIES.iter().find(|p| *p == priority).ok_or_else(|| {
                format!(
                    "sla.{priority}: unknown priority (expected {})",
                    PRIORITIES.join(", ")
                )
            })?;
            let t: TargetToml = value
                .clone()
                .try_into()
                .map_err(|e| format!("sla.{priority}: {e}"))?;
            let parse = |what: &str, v: &str| {
                deskside_config::parse_duration(v)
                    .map_err(|e| format!("sla.{priority}.{what} = {v:?}: {e}"))
            };
            let target = Target {
                response: parse("response", &t.response)?,
                resolution: parse("resolution", &t.resolution)?,
            };
            if target.response > target.resolution {
                return Err(format!(
                    "sla.{priority}: the response target is longer than the resolution target"
                ));
            }
            config.targets.insert(key, target);
        }
        Ok(config)
    }

    pub fn target(&self, priority: &str) -> Target {
        self.targets
            .get(priority)
            .or_else(|| self.targets.get("normal"))
            .copied()
            .unwrap_or(Target {
                response: Duration::from_secs(4 * H),
                resolution: Duration::from_secs(72 * H),
            })
    }

    /// Fills `ticket.sla` as of `now` (Unix seconds).
    pub fn apply(&self, ticket: &mut TicketSummary, now: u64) {
        let t = self.target(&ticket.priority);
        let response_due = ticket.created_at_secs.saturating_add(t.response.as_secs());
        let resolution_due = ticket
            .created_at_secs
            .saturating_add(t.resolution.as_secs());
        ticket.sla = Sla {
            response_due_secs: response_due,
            resolution_due_secs: resolution_due,
            response_breached: ticket.first_response_at_secs.unwrap_or(now) > response_due,
            resolution_breached: ticket.resolved_at_secs.unwrap_or(now) > resolution_due,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_proto::msg::identity::Tier;

    fn ticket(priority: &str) -> TicketSummary {
        TicketSummary {
            number: 1,
            title: "t".into(),
            status: "new".into(),
            tier: Tier::L1,
            priority: priority.into(),
            requester: String::new(),
            owner: None,
            agent: None,
            created_by: "a".into(),
            created_at_secs: 1000,
            first_response_at_secs: None,
            resolved_at_secs: None,
            evidence_count: 0,
            sla: Sla::default(),
            external_ref: None,
            sync_state: None,
        }
    }

    #[test]
    fn defaults_and_breaches() {
        let c = SlaConfig::default();
        let mut t = ticket("urgent");
        c.apply(&mut t, 1000 + 900);
        assert_eq!(t.sla.response_due_secs, 1900);
        assert!(!t.sla.response_breached);
        c.apply(&mut t, 1901);
        assert!(t.sla.response_breached && !t.sla.resolution_breached);
        t.first_response_at_secs = Some(1100);
        c.apply(&mut t, 1_000_000);
        assert!(!t.sla.response_breached && t.sla.resolution_breached);
    }

    #[test]
    fn configured_targets_and_bad_config() -> Result<(), String> {
        let table: toml::Table = "[high]\nresponse = \"30m\"\nresolution = \"2h\"\n"
            .parse()
            .map_err(|e| format!("{e}"))?;
        let c = SlaConfig::from_table(&table)?;
        assert_eq!(c.target("high").response, Duration::from_secs(1800));
        assert_eq!(c.target("low"), SlaConfig::default().target("low"));
        for bad in [
            "[asap]\nresponse = \"1h\"\nresolution = \"2h\"\n",
            "[high]\nresponse = \"soon\"\nresolution = \"2h\"\n",
            "[high]\nresponse = \"3h\"\nresolution = \"2h\"\n",
            "[high]\nresponse = \"1h\"\n",
        ] {
            let table: toml::Table = bad.parse().map_err(|e| format!("{e}"))?;
            assert!(SlaConfig::from_table(&table).is_err(), "{bad}");
        }
        Ok(())
    }
}
