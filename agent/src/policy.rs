//! The machine's own policy (`policy.toml`, owned by the machine's admin): which scopes a
//! technician may ever use here and whether each needs the user's approval. Nothing the
//! controller says can override it.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::state::read_bounded;

/// What the policy says for one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Ask the user each time (the default).
    #[default]
    Prompt,
    /// Unattended managed device: no prompt.
    Allow,
    /// Never, whoever asks.
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scopes {
    #[serde(default)]
    pub diagnostics: Decision,
    #[serde(default, rename = "scripts:l1")]
    pub scripts_l1: Decision,
    #[serde(default, rename = "scripts:l2")]
    pub scripts_l2: Decision,
    #[serde(default, rename = "scripts:l3")]
    pub scripts_l3: Decision,
    #[serde(default)]
    pub files: Decision,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub scopes: Scopes,
    /// What to hide in evidence before it leaves the machine.
    #[serde(default)]
    pub redact: crate::redact::RedactPolicy,
}

/// The policy file written at enrollment when the machine has none: everything prompts.
pub const DEFAULT_POLICY: &str = r#"# Deskside agent policy. Owned by this machine's admin; the controller cannot change it.
# Each scope is "prompt" (ask the user each time), "allow" (unattended managed device)
# or "deny" (never, whoever asks).
[scopes]
diagnostics = "prompt"
"scripts:l1" = "prompt"
"scripts:l2" = "prompt"
"scripts:l3" = "prompt"
files = "prompt"

# What to hide in evidence before it leaves this machine (all off by default).
[redact]
usernames = false
ip_addresses = false
mac_addresses = false
emails = false
patterns = []
"#;

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, toml::de::Error> {
        toml::from_str(text)
    }

    /// Loads `path`; a missing file means the default (everything prompts).
    pub fn load(path: &Path) -> Result<Policy> {
        if !path.exists() {
            return Ok(Policy::default());
        }
        let text = read_bounded(path)?;
        Policy::parse(&text).with_context(|| format!("invalid policy in {}", path.display()))
    }

    /// The decision for a scope name as requests carry it; unknown scopes are denied.
    pub fn decision(&self, scope: &str) -> Decision {
        match scope {
            "diagnostics" => self.scopes.diagnostics,
            "scripts:l1" => self.scopes.scripts_l1,
            "scripts:l2" => self.scopes.scripts_l2,
            "scripts:l3" => self.scopes.scripts_l3,
            "files" => self.scopes.files,
            _ => Decision::Deny,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_prompt_everywhere() -> Result<()> {
        let p = Policy::parse(DEFAULT_POLICY)?;
        assert_eq!(p, Policy::default());
        assert_eq!(p.decision("diagnostics"), Decision::Prompt);
        assert_eq!(p.decision("nonsense"), Decision::Deny);
        Ok(())
    }

    #[test]
    fn allow_and_deny_and_typos() -> Result<()> {
        let p = Policy::parse("[scopes]\ndiagnostics = \"allow\"\n\"scripts:l2\" = \"deny\"\n")?;
        assert_eq!(p.decision("diagnostics"), Decision::Allow);
        assert_eq!(p.decision("scripts:l2"), Decision::Deny);
        assert_eq!(p.decision("scripts:l1"), Decision::Prompt);
        let typo = Policy::parse("[scopes]\ndiagnostic = \"allow\"\n")
            .err()
            .map(|e| e.to_string());
        assert!(typo.unwrap_or_default().contains("diagnostic"));
        assert!(Policy::parse("[scopes]\ndiagnostics = \"yes\"\n").is_err());
        Ok(())
    }
}
