//! Checking a script's manifest and the parameters a technician gives it: names,
//! types, bounds and patterns, before anything runs.

use super::{
    CatalogEntry, MAX_PARAM_BYTES, MAX_PATTERN_BYTES, MAX_TIMEOUT_SECS, ParamKind, ParamSpec,
};

/// Why a parameter or manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    #[error("unknown parameter {0:?} (this script takes: {1})")]
    Unknown(String, String),
    #[error("parameter {0:?} is required")]
    Missing(String),
    #[error("parameter {0:?} was given twice")]
    Duplicate(String),
    #[error("parameter {name:?}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("manifest: {0}")]
    Manifest(String),
}

fn invalid(name: &str, reason: impl Into<String>) -> ParamError {
    ParamError::Invalid {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Compiled size a parameter pattern may reach: a validation regex for one value is a
/// few KiB; 1 MiB refuses a pattern built to exhaust the agent's memory.
const MAX_PATTERN_PROGRAM_BYTES: usize = 1 << 20;

/// Why a parameter's pattern does not compile.
#[derive(Debug, thiserror::Error)]
enum PatternError {
    #[error("pattern is over {MAX_PATTERN_BYTES} bytes")]
    TooLong,
    #[error("bad pattern: {0}")]
    Bad(#[from] regex::Error),
}

fn compile(pattern: &str) -> Result<regex::Regex, PatternError> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(PatternError::TooLong);
    }
    Ok(regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(MAX_PATTERN_PROGRAM_BYTES)
        .build()?)
}

impl ParamSpec {
    /// Checks one value against this parameter's type.
    pub fn check(&self, value: &str) -> Result<(), ParamError> {
        let name = &self.name;
        if value.len() > MAX_PARAM_BYTES {
            return Err(invalid(
                name,
                format!("longer than {MAX_PARAM_BYTES} bytes"),
            ));
        }
        if value.chars().any(|c| c == '\0') {
            return Err(invalid(name, "contains a NUL byte"));
        }
        match &self.kind {
            ParamKind::String { pattern, max_len } => {
                if value.len() > *max_len as usize {
                    return Err(invalid(name, format!("longer than {max_len} bytes")));
                }
                let re = compile(pattern).map_err(|e| invalid(name, e.to_string()))?;
                if !re.is_match(value) {
                    return Err(invalid(
                        name,
                        format!("{value:?} does not match {pattern:?}"),
                    ));
                }
            }
            ParamKind::Integer { min, max } => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| invalid(name, format!("{value:?} is not a whole number")))?;
                if n < *min || n > *max {
                    return Err(invalid(name, format!("{n} is outside {min}..={max}")));
                }
            }
            ParamKind::Enum { values } => {
                if !values.iter().any(|v| v == value) {
                    return Err(invalid(
                        name,
                        format!("{value:?} is not one of {}", values.join(", ")),
                    ));
                }
            }
            ParamKind::Bool => {
                if value != "true" && value != "false" {
                    return Err(invalid(name, format!("{value:?} is not true or false")));
                }
            }
        }
        Ok(())
    }

    /// The environment variable the value reaches the script in.
    pub fn env_name(&self) -> String {
        format!("DESKSIDE_PARAM_{}", self.name.to_ascii_uppercase())
    }
}

impl CatalogEntry {
    /// Checks the manifest itself: names, bounds, patterns, defaults.
    pub fn check(&self) -> Result<(), ParamError> {
        let bad = |m: String| Err(ParamError::Manifest(m));
        if !crate::msg::identity::valid_name(&self.name) {
            return bad(format!(
                "script name {:?} must be 1-64 of [A-Za-z0-9._-]",
                self.name
            ));
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return bad(format!("timeout_secs must be 1..={MAX_TIMEOUT_SECS}"));
        }
        if self.os != "linux" {
            return bad(format!("os {:?} is not supported (linux)", self.os));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.params {
            if !valid_param_name(&p.name) {
                return bad(format!(
                    "parameter name {:?} must match [a-z][a-z0-9_]{{0,31}}",
                    p.name
                ));
            }
            if !seen.insert(p.name.as_str()) {
                return bad(format!("parameter {:?} is declared twice", p.name));
            }
            match &p.kind {
                ParamKind::String { pattern, .. } => {
                    compile(pattern).map_err(|e| {
                        ParamError::Manifest(format!("parameter {:?}: {e}", p.name))
                    })?;
                }
                ParamKind::Integer { min, max } if min > max => {
                    return bad(format!(
                        "parameter {:?}: min {min} is above max {max}",
                        p.name
                    ));
                }
                ParamKind::Enum { values } if values.is_empty() => {
                    return bad(format!("parameter {:?}: an enum needs values", p.name));
                }
                _ => {}
            }
            if let Some(d) = &p.default {
                p.check(d)
                    .map_err(|e| ParamError::Manifest(format!("default: {e}")))?;
            }
            if self.self_service && matches!(p.kind, ParamKind::String { .. }) {
                return bad(format!(
                    "parameter {:?}: a self-service script takes only closed choices \
                     (enum, bool, or integer with min and max), never free text, because \
                     the machine's user fills them in without a technician; make it an enum \
                     or drop self_service",
                    p.name
                ));
            }
        }
        Ok(())
    }

    /// Validates `given` against the declared parameters; returns every parameter's
    /// final value (defaults filled in) as `(ENV_NAME, value)`.
    pub fn resolve_params(
        &self,
        given: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ParamError> {
        let names = || {
            self.params
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut seen = std::collections::HashSet::new();
        for (k, _) in given {
            if !self.params.iter().any(|p| &p.name == k) {
                return Err(ParamError::Unknown(
                    k.clone(),
                    if self.params.is_empty() {
                        "none".into()
                    } else {
                        names()
                    },
                ));
            }
            if !seen.insert(k.as_str()) {
                return Err(ParamError::Duplicate(k.clone()));
            }
        }
        let mut out = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let value = match given.iter().find(|(k, _)| k == &p.name) {
                Some((_, v)) => v.clone(),
                None => p
                    .default
                    .clone()
                    .ok_or_else(|| ParamError::Missing(p.name.clone()))?,
            };
            p.check(&value)?;
            out.push((p.env_name(), value));
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::msg::identity::Tier;
    use crate::msg::script::Interpreter;

    pub(in crate::msg::script) fn entry() -> CatalogEntry {
        CatalogEntry {
            name: "flush-dns".into(),
            version: 1,
            description: "d".into(),
            changes: "c".into(),
            tier: Tier::L1,
            interpreter: Interpreter::Sh,
            os: "linux".into(),
            timeout_secs: 30,
            params: vec![
                ParamSpec {
                    name: "host".into(),
                    description: "".into(),
                    kind: ParamKind::String {
                        pattern: "[A-Za-z0-9.-]+".into(),
                        max_len: 253,
                    },
                    default: None,
                },
                ParamSpec {
                    name: "count".into(),
                    description: "".into(),
                    kind: ParamKind::Integer { min: 1, max: 10 },
                    default: Some("3".into()),
                },
                ParamSpec {
                    name: "mode".into(),
                    description: "".into(),
                    kind: ParamKind::Enum {
                        values: vec!["fast".into(), "full".into()],
                    },
                    default: Some("fast".into()),
                },
                ParamSpec {
                    name: "dry_run".into(),
                    description: "".into(),
                    kind: ParamKind::Bool,
                    default: Some("true".into()),
                },
            ],
            body_sha256: [0; 32],
            self_service: false,
        }
    }

    #[test]
    fn a_self_service_script_takes_closed_choices_only() {
        let mut e = entry();
        e.self_service = true;
        let refused = e.check();
        assert!(
            matches!(&refused, Err(ParamError::Manifest(m)) if m.contains("\"host\"") && m.contains("closed choices")),
            "{refused:?}"
        );
        e.params
            .retain(|p| !matches!(p.kind, ParamKind::String { .. }));
        assert_eq!(e.check(), Ok(()), "enum, bool and bounded integer are fine");
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn valid_params_resolve_with_defaults_into_env_names() {
        let e = entry();
        assert_eq!(e.check(), Ok(()));
        let env = e.resolve_params(&given(&[("host", "example.org"), ("count", "5")]));
        assert_eq!(
            env,
            Ok(vec![
                ("DESKSIDE_PARAM_HOST".into(), "example.org".into()),
                ("DESKSIDE_PARAM_COUNT".into(), "5".into()),
                ("DESKSIDE_PARAM_MODE".into(), "fast".into()),
                ("DESKSIDE_PARAM_DRY_RUN".into(), "true".into()),
            ])
        );
    }

    #[test]
    fn injection_attempts_fail_validation() {
        let e = entry();
        for bad in ["x; rm -rf /", "$(id)", "`id`", "a b", "a\nb", "host\0"] {
            assert!(
                matches!(
                    e.resolve_params(&given(&[("host", bad)])),
                    Err(ParamError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
        // The pattern is anchored: a valid prefix does not smuggle the rest through.
        assert!(
            e.resolve_params(&given(&[("host", "ok.example;id")]))
                .is_err()
        );
    }

    #[test]
    fn types_bounds_unknown_missing_duplicate() {
        let e = entry();
        assert!(matches!(e.resolve_params(&[]), Err(ParamError::Missing(_))));
        assert!(matches!(
            e.resolve_params(&given(&[("host", "h"), ("nope", "1")])),
            Err(ParamError::Unknown(..))
        ));
        assert!(matches!(
            e.resolve_params(&given(&[("host", "h"), ("host", "i")])),
            Err(ParamError::Duplicate(_))
        ));
        for (k, v) in [
            ("count", "11"),
            ("count", "0"),
            ("count", "1e3"),
            ("mode", "slow"),
            ("dry_run", "yes"),
        ] {
            assert!(
                e.resolve_params(&given(&[("host", "h"), (k, v)])).is_err(),
                "{k}={v}"
            );
        }
        assert!(
            e.resolve_params(&given(&[("host", &"a".repeat(254))]))
                .is_err()
        );
    }

    #[test]
    fn bad_manifests_are_refused() {
        let mut e = entry();
        e.timeout_secs = 0;
        assert!(e.check().is_err());
        let mut e = entry();
        e.params.push(
            e.params
                .first()
                .cloned()
                .unwrap_or_else(|| entry().params.remove(0)),
        );
        assert!(e.check().is_err());
        let mut e = entry();
        e.params.truncate(1);
        if let Some(p) = e.params.first_mut() {
            p.kind = ParamKind::String {
                pattern: "(".into(),
                max_len: 5,
            };
        }
        assert!(e.check().is_err());
        let mut e = entry();
        e.name = "../etc".into();
        assert!(e.check().is_err());
    }
}
