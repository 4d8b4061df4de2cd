//! The agent service's settings: `/etc/deskside/agent.toml` (or `--config`,
//! `$DESKSIDE_AGENT_CONFIG`), then `DESKSIDE_*` environment overrides; the CLI applies its
//! flags last. Everything is parsed and validated here, before the agent dials out.
//!
//! This is service plumbing only (where state lives, logging, reconnect timing). What the
//! help desk may do on this machine is the machine admin's policy, in
//! `<state>/policy.toml` ([`crate::policy`]), and is not configured here.
//!
//! The value checks and the error type come from `deskside-config`, shared with the
//! controller's configuration so both sides speak the same way about bad values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use deskside_config::{
    FileKeys, env_invalid, parse_duration, parse_log_format, parse_toml, read_config, render,
};

pub use deskside_config::{ConfigError, EXIT_CODE, LogFormat, Origin, check_log_level};

use crate::backoff::Backoff;
use crate::backoff::{RECONNECT_BASE, RECONNECT_CAP};

mod reconnect;

use reconnect::{Blame, check_reconnect};

/// Where the service looks when neither `--config` nor `$DESKSIDE_AGENT_CONFIG` names a file.
pub const DEFAULT_PATH: &str = "/etc/deskside/agent.toml";

/// The default `tracing` filter for the service.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Longest accepted `reconnect.cap`: beyond this, agents would come back hours after an
/// outage ends, which no help desk wants.
pub const MAX_RECONNECT_CAP: Duration = Duration::from_secs(3600);

/// A config file is a few hundred bytes; anything this large is not one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Environment variables read by [`load`].
pub mod env {
    /// The config file to read instead of [`super::DEFAULT_PATH`].
    pub const CONFIG: &str = "DESKSIDE_AGENT_CONFIG";
    pub const STATE: &str = "DESKSIDE_AGENT_STATE";
    pub const SOCKET: &str = "DESKSIDE_AGENT_SOCKET";
    pub const LOG_FORMAT: &str = "DESKSIDE_LOG_FORMAT";
    pub const LOG_LEVEL: &str = "DESKSIDE_LOG_LEVEL";
    pub const RECONNECT_BASE: &str = "DESKSIDE_RECONNECT_BASE";
    pub const RECONNECT_CAP: &str = "DESKSIDE_RECONNECT_CAP";
}

/// The agent service's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// State directory; `None` means [`crate::state::StateDir::resolve`]'s default.
    pub state: Option<PathBuf>,
    /// Control socket; `None` means [`crate::state::StateDir::control_socket`]'s default.
    pub control_socket: Option<PathBuf>,
    pub log_format: LogFormat,
    /// A `tracing` filter directive, already checked by [`check_log_level`].
    pub log_level: String,
    /// First reconnect delay; `0 < reconnect_base <= reconnect_cap`.
    pub reconnect_base: Duration,
    /// Longest wait between reconnect attempts, at most [`MAX_RECONNECT_CAP`].
    pub reconnect_cap: Duration,
    /// The file that was read; `None` when the built-in defaults are in force.
    pub source: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            state: None,
            control_socket: None,
            log_format: LogFormat::Human,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            reconnect_base: RECONNECT_BASE,
            reconnect_cap: RECONNECT_CAP,
            source: None,
        }
    }
}

impl AgentConfig {
    /// A backoff with this config's parameters (validated by [`load`], so this cannot fail
    /// for a loaded config).
    pub fn backoff(&self) -> Result<Backoff, crate::backoff::BackoffError> {
        Backoff::new(self.reconnect_base, self.reconnect_cap)
    }
}

/// The annotated example config (`packaging/examples/agent.toml`).
pub fn example() -> &'static str {
    include_str!("../../../packaging/examples/agent.toml")
}

/// The configuration file this process read first, kept from what it sends (`protect`).
static LOADED_FROM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The configuration file this process read, if any.
pub fn loaded_from() -> Option<&'static Path> {
    LOADED_FROM.get().map(PathBuf::as_path)
}

/// Loads the config: `path` (from `--config`), else `$DESKSIDE_AGENT_CONFIG`, else
/// [`DEFAULT_PATH`] if it exists, else the built-in defaults; then applies the
/// environment overrides read through `env` (pass `&|k| std::env::var(k).ok()`).
/// Empty environment values count as unset.
pub fn load(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, ConfigError> {
    load_with_default(path, env, Path::new(DEFAULT_PATH))
}

fn load_with_default(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    default: &Path,
) -> Result<AgentConfig, ConfigError> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    let chosen = match (path, get(env::CONFIG)) {
        (Some(p), _) => Some((p.to_owned(), "--config".to_owned())),
        (None, Some(p)) => Some((PathBuf::from(p), env::CONFIG.to_owned())),
        // An unreadable default (permissions) is reported rather than skipped.
        (None, None) => match default.try_exists() {
            Ok(false) => None,
            _ => Some((default.to_owned(), "the default location".to_owned())),
        },
    };
    if let Some((path, _)) = &chosen {
        let _ = LOADED_FROM.set(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    }
    let parsed = match chosen {
        Some((path, named_by)) => {
            parse_file(&read_config(&path, &named_by, MAX_CONFIG_BYTES)?, &path)?
        }
        None => {
            let config = AgentConfig::default();
            Parsed {
                base: Blame::default_of("reconnect.base", config.reconnect_base),
                cap: Blame::default_of("reconnect.cap", config.reconnect_cap),
                config,
            }
        }
    };
    parsed.apply_env(&get)
}

const TOP_KEYS: &str = "expected state, control_socket, [log], [reconnect]";
const LOG_KEYS: &str = "expected format, level";
const RECONNECT_KEYS: &str = "expected base, cap";

/// A parsed file with the provenance of its reconnect values, before the cross-key check.
struct Parsed {
    config: AgentConfig,
    base: Blame,
    cap: Blame,
}

/// Parses and validates config text; `path` names the file in errors and anchors a
/// relative `state`. Environment overrides are not applied.
pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
    let parsed = parse_file(text, path)?;
    check_reconnect(&parsed.config, &parsed.base, &parsed.cap)?;
    Ok(parsed.config)
}

fn parse_file(text: &str, path: &Path) -> Result<Parsed, ConfigError> {
    let doc = parse_toml(text, path)?;
    let f = FileKeys { path };
    let mut config = AgentConfig {
        source: Some(path.to_owned()),
        ..AgentConfig::default()
    };
    let mut base = Blame::default_of("reconnect.base", config.reconnect_base);
    let mut cap = Blame::default_of("reconnect.cap", config.reconnect_cap);
    let from_file = |key: &str, v: &toml::Value| Blame {
        layer: 1,
        origin: Origin::File(path.to_owned()),
        key: key.to_owned(),
        value: render(v),
    };
    for (key, value) in &doc {
        match key.as_str() {
            "state" => config.state = Some(f.dir("state", value)?),
            "control_socket" => config.control_socket = Some(f.dir("control_socket", value)?),
            "log" => {
                for (k, v) in f.table("log", value)? {
                    match k.as_str() {
                        "format" => config.log_format = f.log_format("log.format", v)?,
                        "level" => config.log_level = f.log_level("log.level", v)?,
                        other => return Err(f.unknown(&format!("log.{other}"), LOG_KEYS)),
                    }
                }
            }
            "reconnect" => {
                for (k, v) in f.table("reconnect", value)? {
                    match k.as_str() {
                        "base" => {
                            config.reconnect_base = f.duration("reconnect.base", v)?;
                            base = from_file("reconnect.base", v);
                        }
                        "cap" => {
                            config.reconnect_cap = f.duration("reconnect.cap", v)?;
                            cap = from_file("reconnect.cap", v);
                        }
                        other => {
                            return Err(f.unknown(&format!("reconnect.{other}"), RECONNECT_KEYS));
                        }
                    }
                }
            }
            "policy" | "controller" => {
                return Err(f.unknown(
                    key,
                    "agent.toml holds service settings only: the help desk's permissions are in <state>/policy.toml and the controller address comes from enrollment",
                ));
            }
            other => return Err(f.unknown(other, TOP_KEYS)),
        }
    }
    Ok(Parsed { config, base, cap })
}

impl Parsed {
    /// Applies `DESKSIDE_*` overrides; `get` returns `None` for unset (and empty) variables.
    fn apply_env(
        mut self,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let c = &mut self.config;
        if let Some(v) = get(env::STATE) {
            c.state = Some(PathBuf::from(v));
        }
        if let Some(v) = get(env::SOCKET) {
            c.control_socket = Some(PathBuf::from(v));
        }
        if let Some(v) = get(env::LOG_FORMAT) {
            c.log_format =
                parse_log_format(&v).map_err(|reason| env_invalid(env::LOG_FORMAT, &v, reason))?;
        }
        if let Some(v) = get(env::LOG_LEVEL) {
            check_log_level(&v).map_err(|reason| env_invalid(env::LOG_LEVEL, &v, reason))?;
            c.log_level = v;
        }
        let from_env = |var: &str, v: &str| Blame {
            layer: 2,
            origin: Origin::Env,
            key: var.to_owned(),
            value: format!("{v:?}"),
        };
        if let Some(v) = get(env::RECONNECT_BASE) {
            c.reconnect_base = parse_duration(&v)
                .map_err(|e| env_invalid(env::RECONNECT_BASE, &v, e.to_string()))?;
            self.base = from_env(env::RECONNECT_BASE, &v);
        }
        if let Some(v) = get(env::RECONNECT_CAP) {
            c.reconnect_cap = parse_duration(&v)
                .map_err(|e| env_invalid(env::RECONNECT_CAP, &v, e.to_string()))?;
            self.cap = from_env(env::RECONNECT_CAP, &v);
        }
        check_reconnect(&self.config, &self.base, &self.cap)?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests;
