//! Redaction before evidence leaves the machine: the machine's policy lists what to hide
//! (user names, IP and MAC addresses, e-mail addresses, custom patterns). It works on the
//! string values of the evidence JSON, so structure and numbers stay intact, and the
//! evidence records which rules were applied.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// `[redact]` in policy.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactPolicy {
    /// Local account names (uid ≥ 1000 in /etc/passwd) and logged-in users.
    #[serde(default)]
    pub usernames: bool,
    #[serde(default)]
    pub ip_addresses: bool,
    #[serde(default)]
    pub mac_addresses: bool,
    #[serde(default)]
    pub emails: bool,
    /// Extra regular expressions; each match becomes `[redacted]`.
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// Longest custom pattern accepted, and the compiled-size cap, so a policy cannot make
/// the agent build a huge automaton.
const MAX_PATTERN_BYTES: usize = 512;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug)]
pub struct Redactor {
    rules: Vec<(String, Regex, &'static str)>,
}

/// A redaction rule of the policy that does not compile, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("redact.{rule}: {problem}")]
pub struct RedactError {
    /// `emails`, `patterns[2]`, …
    pub rule: String,
    pub problem: PatternProblem,
}

/// Why a pattern does not compile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatternProblem {
    #[error("pattern over {MAX_PATTERN_BYTES} bytes")]
    TooLong,
    #[error("{0}")]
    Invalid(#[from] regex::Error),
}

fn compile(p: &str) -> Result<Regex, PatternProblem> {
    if p.len() > MAX_PATTERN_BYTES {
        return Err(PatternProblem::TooLong);
    }
    Ok(regex::RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()?)
}

/// Local human accounts: uid ≥ 1000 (Debian's first regular user), not `nobody`.
fn local_user_names() -> Vec<String> {
    let mut names: Vec<String> = crate::os::accounts()
        .into_iter()
        .filter(|a| a.uid.is_some_and(|uid| (1000..65534).contains(&uid)) && a.name.len() >= 2)
        .map(|a| a.name)
        .collect();
    names.extend(
        crate::diag::logged_in_user_names()
            .into_iter()
            .filter(|n| n.len() >= 2 && n != "root"),
    );
    names.sort();
    names.dedup();
    names
}

impl Redactor {
    pub fn new(policy: &RedactPolicy) -> Result<Redactor, RedactError> {
        let mut rules = Vec::new();
        let mut add = |name: &str, pattern: &str, with: &'static str| -> Result<(), RedactError> {
            let compiled = compile(pattern).map_err(|problem| RedactError {
                rule: name.to_owned(),
                problem,
            })?;
            rules.push((name.to_owned(), compiled, with));
            Ok(())
        };
        if policy.emails {
            add(
                "emails",
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
                "[email]",
            )?;
        }
        if policy.mac_addresses {
            add(
                "mac_addresses",
                r"\b[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}\b",
                "[mac]",
            )?;
        }
        if policy.ip_addresses {
            add(
                "ip_addresses",
                r"\b(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}\b",
                "[ip]",
            )?;
            // IPv6: at least two groups around a "::" or eight full groups.
            add(
                "ip_addresses",
                r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:)+:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?|::1\b",
                "[ip]",
            )?;
        }
        if policy.usernames {
            let names = local_user_names();
            if !names.is_empty() {
                let alternation = names
                    .iter()
                    .map(|n| regex::escape(n))
                    .collect::<Vec<_>>()
                    .join("|");
                add("usernames", &format!(r"\b(?:{alternation})\b"), "[user]")?;
            }
        }
        for (i, p) in policy.patterns.iter().enumerate() {
            rules.push((
                format!("pattern:{i}"),
                compile(p).map_err(|problem| RedactError {
                    rule: format!("patterns[{i}]"),
                    problem,
                })?,
                "[redacted]",
            ));
        }
        Ok(Redactor { rules })
    }

    /// The rule names applied, for the evidence record (deduplicated, in order).
    pub fn rules(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (name, _, _) in &self.rules {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    fn text(&self, s: &mut String) {
        for (_, re, with) in &self.rules {
            if re.is_match(s) {
                *s = re.replace_all(s, *with).into_owned();
            }
        }
    }

    /// Redacts every string value (not keys, not numbers) in `v`.
    pub fn apply(&self, v: &mut serde_json::Value) {
        if self.rules.is_empty() {
            return;
        }
        match v {
            serde_json::Value::String(s) => self.text(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.apply(i)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| self.apply(i)),
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // serde_json::Value indexing yields Null, never panics
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_values_not_keys_or_numbers() -> Result<(), RedactError> {
        let r = Redactor::new(&RedactPolicy {
            ip_addresses: true,
            mac_addresses: true,
            emails: true,
            patterns: vec!["SERIAL-[0-9]+".into()],
            ..RedactPolicy::default()
        })?;
        let mut v = json!({
            "addresses": ["192.0.2.10/24", "fe80::1/64", "2001:db8:0:0:0:0:0:1"],
            "mac": "aa:bb:cc:dd:ee:ff",
            "text": "mail bob@example.org about SERIAL-1234 at 10.0.0.1",
            "ip_addresses": 3,
            "version": "1.2.3.4.5"
        });
        r.apply(&mut v);
        assert_eq!(v["addresses"], json!(["[ip]/24", "[ip]/64", "[ip]"]));
        assert_eq!(v["mac"], "[mac]");
        assert_eq!(v["text"], "mail [email] about [redacted] at [ip]");
        assert_eq!(v["ip_addresses"], 3);
        assert_eq!(
            r.rules(),
            vec!["emails", "mac_addresses", "ip_addresses", "pattern:0"]
        );
        Ok(())
    }

    #[test]
    fn nothing_configured_changes_nothing_and_bad_patterns_are_errors() -> Result<(), RedactError> {
        let r = Redactor::new(&RedactPolicy::default())?;
        let mut v = json!({"a": "192.0.2.1"});
        r.apply(&mut v);
        assert_eq!(v["a"], "192.0.2.1");
        assert!(r.rules().is_empty());
        let err = Redactor::new(&RedactPolicy {
            patterns: vec!["(".into()],
            ..RedactPolicy::default()
        });
        assert!(err.is_err_and(|e| e.to_string().contains("redact.patterns[0]")));
        let err = Redactor::new(&RedactPolicy {
            patterns: vec!["x".repeat(MAX_PATTERN_BYTES + 1)],
            ..RedactPolicy::default()
        });
        assert!(err.is_err_and(|e| e.to_string()
            == format!("redact.patterns[0]: pattern over {MAX_PATTERN_BYTES} bytes")));
        Ok(())
    }
}
