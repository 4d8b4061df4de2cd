//! Who is on the other end: agents and technicians, and technicians' tiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Support tier: L1 hotline, L2 desktop engineering, L3 specialists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    L1,
    L2,
    L3,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
            Tier::L3 => "l3",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tier name that is not `l1`, `l2` or `l3`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {0:?}: expected l1, l2 or l3")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "l1" => Ok(Tier::L1),
            "l2" => Ok(Tier::L2),
            "l3" => Ok(Tier::L3),
            _ => Err(UnknownTier(s.to_owned())),
        }
    }
}

/// The identity a controller-issued certificate carries in its common name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Identity {
    Agent { id: String },
    Technician { name: String },
}

impl Identity {
    const AGENT_PREFIX: &'static str = "agent:";
    const TECH_PREFIX: &'static str = "tech:";

    /// The certificate common name for this identity, e.g. `agent:ag-1f3a…`.
    pub fn common_name(&self) -> String {
        match self {
            Identity::Agent { id } => format!("{}{id}", Self::AGENT_PREFIX),
            Identity::Technician { name } => format!("{}{name}", Self::TECH_PREFIX),
        }
    }

    /// Parses a common name made by [`Identity::common_name`].
    pub fn from_common_name(cn: &str) -> Option<Identity> {
        if let Some(id) = cn.strip_prefix(Self::AGENT_PREFIX) {
            valid_name(id).then(|| Identity::Agent { id: id.to_owned() })
        } else if let Some(name) = cn.strip_prefix(Self::TECH_PREFIX) {
            valid_name(name).then(|| Identity::Technician {
                name: name.to_owned(),
            })
        } else {
            None
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Agent { id } => write!(f, "agent {id}"),
            Identity::Technician { name } => write!(f, "technician {name}"),
        }
    }
}

/// Agent ids and technician names: 1–64 of `[A-Za-z0-9._-]`, starting alphanumeric.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    s.len() <= 64
        && first.is_ascii_alphanumeric()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_round_trips() {
        for id in [
            Identity::Agent {
                id: "ag-12ab".into(),
            },
            Identity::Technician {
                name: "alice".into(),
            },
        ] {
            assert_eq!(Identity::from_common_name(&id.common_name()), Some(id));
        }
    }

    #[test]
    fn common_name_rejects_foreign_and_odd_names() {
        for cn in [
            "alice", "agent:", "tech:-x", "tech:a b", "agent:ü", "tech:a/b",
        ] {
            assert_eq!(Identity::from_common_name(cn), None, "{cn}");
        }
        assert_eq!(
            Identity::from_common_name(&format!("tech:{}", "a".repeat(65))),
            None
        );
    }

    #[test]
    fn tiers_parse_case_insensitively_and_reject_others() {
        assert_eq!("L2".parse::<Tier>(), Ok(Tier::L2));
        assert!("l4".parse::<Tier>().is_err());
        assert!(Tier::L1 < Tier::L3);
    }
}
