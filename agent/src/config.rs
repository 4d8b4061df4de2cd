//! The agent service's settings: `/etc/deskside/agent.toml` (or `--config`,
//! `$DESKSIDE_AGENT_CONFIG`), then `DESKSIDE_*` environment overrides; the CLI applies its
//! flags last. Everything is parsed and validated here, before the agent dials out.
//!
//! This is service plumbing only (where state lives, logging, reconnect timing). What the
//! help desk may do on this machine is the machine admin's policy, in
//! `<state>/policy.toml` ([`crate::policy`]), and is not configured here.
//!
//! [`Origin`], [`FileKeys`], [`check_log_level`] and the error type are shared with the
//! controller's configuration so both sides speak the same way about bad values.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use deskside_transport::logging::LogFormat;

use crate::backoff::Backoff;
use crate::link::{RECONNECT_BASE, RECONNECT_CAP};

/// Where the service looks when neither `--config` nor `$DESKSIDE_AGENT_CONFIG` names a file.
pub const DEFAULT_PATH: &str = "/etc/deskside/agent.toml";

/// The default `tracing` filter for the service.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Longest accepted `reconnect.cap`: beyond this, agents would come back hours after an
/// outage ends, which no help desk wants.
pub const MAX_RECONNECT_CAP: Duration = Duration::from_secs(3600);

/// A config file is a few hundred bytes; anything this large is not one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Exit status for a bad configuration (sysexits' EX_USAGE, as linkerd2-proxy).
pub const EXIT_CODE: u8 = 64;

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

/// Parses `log.format` / `DESKSIDE_LOG_FORMAT`.
pub fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err("not a log format (human or json)".to_owned()),
    }
}

/// Checks a `tracing` filter directive (`info`, `warn,deskside_agent=debug`, …).
///
/// Stricter than `EnvFilter` on one point: a bare word must be a level. `EnvFilter` reads
/// `verbose` as "everything from a target named verbose", which silently logs nothing.
pub fn check_log_level(directive: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if directive.trim().is_empty() {
        return Err(format!(
            "empty filter; use a level ({}) or TARGET=LEVEL pairs",
            LEVELS.join(", ")
        ));
    }
    for part in directive
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let bare = !part.contains('=') && !part.contains('[');
        if bare && !LEVELS.contains(&part.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{part:?} is not a level ({}); to filter a target write TARGET=LEVEL, e.g. deskside_agent=debug",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(directive)
        .map(drop)
        .map_err(|e| format!("not a tracing filter: {e} (e.g. info or warn,deskside_agent=debug)"))
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Env,
    /// A built-in default (only blamed when nothing else can be).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env => f.write_str("environment"),
            Origin::Default => f.write_str("built-in defaults"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {} (named by {named_by}): {source}", path.display())]
    Read {
        path: PathBuf,
        /// `--config`, the environment variable, or the default location.
        named_by: String,
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// `key` is the dotted file key, or the environment variable's name.
    #[error("{origin}: {key} = {value}: {reason}")]
    Invalid {
        origin: Origin,
        key: String,
        value: String,
        reason: String,
    },
    #[error("{origin}: {key}: unknown key; {expected}")]
    Unknown {
        origin: Origin,
        key: String,
        expected: String,
    },
}

impl ConfigError {
    /// The process exit status for any configuration error.
    pub const EXIT_CODE: u8 = EXIT_CODE;
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
    include_str!("../../packaging/examples/agent.toml")
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
        Some((path, named_by)) => parse_file(&read_config(&path, named_by)?, &path)?,
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

/// Reads a config file of at most [`MAX_CONFIG_BYTES`].
fn read_config(path: &Path, named_by: String) -> Result<String, ConfigError> {
    let too_big = |len: u64| ConfigError::Read {
        path: path.to_owned(),
        named_by: named_by.clone(),
        source: std::io::Error::other(format!(
            "{len} bytes is too large for a config file (limit {MAX_CONFIG_BYTES})"
        )),
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_CONFIG_BYTES => return Err(too_big(m.len())),
        _ => {}
    }
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        named_by,
        source,
    })
}

/// Renders a TOML value for an error message: strings quoted, tables not spelled out.
pub fn render(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(_) => "(a table)".to_owned(),
        other => other.to_string(),
    }
}

/// Helpers to validate one file's values with errors that name the file and key.
#[derive(Debug)]
pub struct FileKeys<'a> {
    pub path: &'a Path,
}

impl FileKeys<'_> {
    pub fn invalid(
        &self,
        key: &str,
        value: &toml::Value,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: Origin::File(self.path.to_owned()),
            key: key.to_owned(),
            value: render(value),
            reason: reason.into(),
        }
    }

    pub fn unknown(&self, key: &str, expected: &str) -> ConfigError {
        ConfigError::Unknown {
            origin: Origin::File(self.path.to_owned()),
            key: key.to_owned(),
            expected: expected.to_owned(),
        }
    }

    pub fn string<'v>(&self, key: &str, value: &'v toml::Value) -> Result<&'v str, ConfigError> {
        value
            .as_str()
            .ok_or_else(|| self.invalid(key, value, "must be a string (in double quotes)"))
    }

    pub fn table<'v>(
        &self,
        key: &str,
        value: &'v toml::Value,
    ) -> Result<&'v toml::Table, ConfigError> {
        value
            .as_table()
            .ok_or_else(|| self.invalid(key, value, format!("must be a table ([{key}])")))
    }

    /// A directory path; a relative one is taken relative to the config file's directory.
    pub fn dir(&self, key: &str, value: &toml::Value) -> Result<PathBuf, ConfigError> {
        let s = self.string(key, value)?;
        if s.is_empty() {
            return Err(self.invalid(key, value, "is empty; remove the key to use the default"));
        }
        let base = self.path.parent().unwrap_or(Path::new(""));
        Ok(base.join(s))
    }

    pub fn log_format(&self, key: &str, value: &toml::Value) -> Result<LogFormat, ConfigError> {
        parse_log_format(self.string(key, value)?)
            .map_err(|reason| self.invalid(key, value, reason))
    }

    pub fn log_level(&self, key: &str, value: &toml::Value) -> Result<String, ConfigError> {
        let s = self.string(key, value)?;
        check_log_level(s).map_err(|reason| self.invalid(key, value, reason))?;
        Ok(s.to_owned())
    }

    pub fn duration(&self, key: &str, value: &toml::Value) -> Result<Duration, ConfigError> {
        let s = self.string(key, value)?;
        parse_duration(s).map_err(|reason| self.invalid(key, value, reason))
    }
}

/// An error for an environment override.
pub fn env_invalid(var: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: Origin::Env,
        key: var.to_owned(),
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("not a duration: {e} (e.g. 500ms, 1s, 2m)"))
}

const TOP_KEYS: &str = "expected state, control_socket, [log], [reconnect]";
const LOG_KEYS: &str = "expected format, level";
const RECONNECT_KEYS: &str = "expected base, cap";

/// Where a reconnect value came from, to blame the right one when base and cap disagree.
#[derive(Debug, Clone)]
struct Blame {
    /// 0 built-in default, 1 file, 2 environment: the later layer is the likelier mistake.
    layer: u8,
    origin: Origin,
    key: String,
    value: String,
}

impl Blame {
    fn default_of(key: &str, d: Duration) -> Blame {
        Blame {
            layer: 0,
            origin: Origin::Default,
            key: key.to_owned(),
            value: quoted_duration(d),
        }
    }
}

fn quoted_duration(d: Duration) -> String {
    format!("{:?}", humantime::format_duration(d).to_string())
}

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
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
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
                .map_err(|reason| env_invalid(env::RECONNECT_BASE, &v, reason))?;
            self.base = from_env(env::RECONNECT_BASE, &v);
        }
        if let Some(v) = get(env::RECONNECT_CAP) {
            c.reconnect_cap =
                parse_duration(&v).map_err(|reason| env_invalid(env::RECONNECT_CAP, &v, reason))?;
            self.cap = from_env(env::RECONNECT_CAP, &v);
        }
        check_reconnect(&self.config, &self.base, &self.cap)?;
        Ok(self.config)
    }
}

/// `0 < base <= cap <= MAX_RECONNECT_CAP`, checked by [`Backoff::new`] itself so the
/// service can never be handed parameters it would refuse. When base and cap disagree,
/// the one set in the later layer (environment over file over default) is blamed.
fn check_reconnect(config: &AgentConfig, base: &Blame, cap: &Blame) -> Result<(), ConfigError> {
    let fail = |b: &Blame, reason: String| ConfigError::Invalid {
        origin: b.origin.clone(),
        key: b.key.clone(),
        value: b.value.clone(),
        reason,
    };
    let show = |d: Duration| humantime::format_duration(d).to_string();
    match config.backoff() {
        Ok(_) => {}
        Err(crate::backoff::BackoffError::ZeroBase) => {
            return Err(fail(base, "must be above zero (e.g. 1s)".to_owned()));
        }
        Err(crate::backoff::BackoffError::CapBelowBase { .. }) if base.layer > cap.layer => {
            return Err(fail(
                base,
                format!(
                    "is above the reconnect cap ({}); the base must not exceed the cap",
                    show(config.reconnect_cap)
                ),
            ));
        }
        Err(crate::backoff::BackoffError::CapBelowBase { .. }) => {
            return Err(fail(
                cap,
                format!(
                    "is below the reconnect base ({}); the cap must be at least the base",
                    show(config.reconnect_base)
                ),
            ));
        }
    }
    if config.reconnect_cap > MAX_RECONNECT_CAP {
        return Err(fail(
            cap,
            format!(
                "is longer than {}: agents would come back hours after an outage",
                show(MAX_RECONNECT_CAP)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write(dir: &Path, text: &str) -> anyhow::Result<PathBuf> {
        let path = dir.join("agent.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    #[test]
    fn control_socket_from_file_relative_to_it_and_env_overrides() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = write(dir.path(), "control_socket = \"run/control.sock\"\n")?;
        let c = load_with_default(Some(&path), &no_env, &dir.path().join("absent.toml"))?;
        assert_eq!(c.control_socket, Some(dir.path().join("run/control.sock")));
        let env = env_of(&[(env::SOCKET, "/run/elsewhere.sock")]);
        let c = load_with_default(Some(&path), &env, &dir.path().join("absent.toml"))?;
        assert_eq!(c.control_socket, Some(PathBuf::from("/run/elsewhere.sock")));
        let empty = write(dir.path(), "control_socket = \"\"\n")?;
        let err = load_with_default(Some(&empty), &no_env, &dir.path().join("absent.toml"));
        assert!(
            err.as_ref()
                .is_err_and(|e| e.to_string().contains("control_socket")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn no_file_anywhere_means_defaults() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let c = load_with_default(None, &no_env, &dir.path().join("absent.toml"))?;
        assert_eq!(c, AgentConfig::default());
        assert_eq!(c.reconnect_base, RECONNECT_BASE);
        assert_eq!(c.reconnect_cap, RECONNECT_CAP);
        Ok(())
    }

    #[test]
    fn file_then_env_with_flag_path_winning_over_env_path() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = write(
            dir.path(),
            "state = \"st\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n[reconnect]\nbase = \"2s\"\ncap = \"5m\"\n",
        )?;
        let env = env_of(&[(env::CONFIG, "/nonexistent/agent.toml")]);
        let c = load(Some(&path), &env)?;
        assert_eq!(c.state, Some(dir.path().join("st")));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.reconnect_base, Duration::from_secs(2));
        assert_eq!(c.reconnect_cap, Duration::from_secs(300));
        assert_eq!(c.source.as_deref(), Some(path.as_path()));

        let env = env_of(&[
            (env::CONFIG, path.to_str().unwrap_or_default()),
            (env::STATE, "/srv/agent"),
            (env::LOG_FORMAT, "human"),
            (env::LOG_LEVEL, "warn,deskside_agent=trace"),
            (env::RECONNECT_CAP, "10m"),
            (env::RECONNECT_BASE, ""),
        ]);
        let c = load(None, &env)?;
        assert_eq!(c.source.as_deref(), Some(path.as_path()));
        assert_eq!(c.state, Some(PathBuf::from("/srv/agent")));
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(c.log_level, "warn,deskside_agent=trace");
        assert_eq!(
            c.reconnect_base,
            Duration::from_secs(2),
            "empty env is unset"
        );
        assert_eq!(c.reconnect_cap, Duration::from_secs(600));
        Ok(())
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error() {
        let env = env_of(&[(env::CONFIG, "/nonexistent/agent.toml")]);
        let err = load(None, &env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/agent.toml"), "{err}");
        assert!(err.contains(env::CONFIG), "{err}");
    }

    #[test]
    fn errors_name_the_file_key_value_and_reason() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cases = [
            ("colour = 1\n", "colour: unknown key"),
            ("[policy]\nallow = []\n", "policy.toml"),
            (
                "[log]\nformat = \"xml\"\n",
                "log.format = \"xml\": not a log format",
            ),
            ("[log]\nlevel = \"verbose\"\n", "log.level = \"verbose\""),
            (
                "[log]\nlevel = \"info,x=loud\"\n",
                "log.level = \"info,x=loud\"",
            ),
            ("[log]\nsize = 3\n", "log.size: unknown key"),
            (
                "[reconnect]\nbase = \"soon\"\n",
                "reconnect.base = \"soon\": not a duration",
            ),
            (
                "[reconnect]\nbase = \"0s\"\n",
                "reconnect.base = \"0s\": must be above zero",
            ),
            (
                "[reconnect]\nbase = \"10s\"\ncap = \"5s\"\n",
                "reconnect.cap = \"5s\": is below the reconnect base (10s)",
            ),
            (
                "[reconnect]\ncap = \"1day\"\n",
                "reconnect.cap = \"1day\": is longer than",
            ),
            (
                "[reconnect]\ncap = 60\n",
                "reconnect.cap = 60: must be a string",
            ),
            ("state = \"\"\n", "state = \"\": is empty"),
            ("log = \"json\"\n", "log = \"json\": must be a table"),
            ("[log\n", "not valid TOML"),
        ];
        for (text, want) in cases {
            let path = write(dir.path(), text)?;
            let err = match load(Some(&path), &no_env) {
                Ok(c) => anyhow::bail!("accepted {text:?}: {c:?}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(err.starts_with(&path.display().to_string()), "{err:?}");
        }
        Ok(())
    }

    #[test]
    fn env_errors_name_the_variable() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = write(dir.path(), "[reconnect]\nbase = \"30s\"\n")?;
        let cases = [
            (
                env::LOG_FORMAT,
                "yaml",
                "environment: DESKSIDE_LOG_FORMAT = \"yaml\"",
            ),
            (
                env::LOG_LEVEL,
                "chatty",
                "environment: DESKSIDE_LOG_LEVEL = \"chatty\"",
            ),
            (
                env::RECONNECT_BASE,
                "1 fortnight",
                "DESKSIDE_RECONNECT_BASE",
            ),
            // The cap from the environment is below the base from the file: blame the cap.
            (
                env::RECONNECT_CAP,
                "10s",
                "environment: DESKSIDE_RECONNECT_CAP = \"10s\": is below the reconnect base (30s)",
            ),
        ];
        for (var, value, want) in cases {
            let env = env_of(&[(var, value)]);
            let err = match load(Some(&path), &env) {
                Ok(c) => anyhow::bail!("accepted {var}={value}: {c:?}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        // The base raised by the environment above the file's cap blames the variable.
        let path = write(dir.path(), "[reconnect]\ncap = \"5s\"\n")?;
        let err = load(Some(&path), &env_of(&[(env::RECONNECT_BASE, "8s")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("DESKSIDE_RECONNECT_BASE = \"8s\": is above the reconnect cap (5s)"),
            "{err}"
        );
        // A file base above the default cap blames the base, not the unwritten cap.
        let path = write(dir.path(), "[reconnect]\nbase = \"2m\"\n")?;
        let err = load(Some(&path), &no_env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("reconnect.base = \"2m\": is above the reconnect cap (1m)"),
            "{err}"
        );
        assert_eq!(ConfigError::EXIT_CODE, 64);
        Ok(())
    }

    #[test]
    fn log_levels() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,deskside_agent=debug",
            "quinn=trace",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["", "verbose", "info,,loud", "x=loud"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }

    /// Turns `#key = value` / `#[table]` lines (no space after `#`) into settings.
    fn uncomment(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c == '[' || c.is_ascii_lowercase()) => {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_example_parses_and_shows_the_defaults() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = write(dir.path(), example())?;
        let c = load(Some(&path), &no_env)?;
        assert_eq!(
            c,
            AgentConfig {
                source: Some(path.clone()),
                ..AgentConfig::default()
            }
        );
        // Uncommenting the optional keys gives the documented root default for `state`.
        let path = write(dir.path(), &uncomment(example()))?;
        let c = load(Some(&path), &no_env)?;
        assert_eq!(c.state, Some(PathBuf::from("/var/lib/deskside-agent")));
        assert!(example().contains("policy.toml"));
        Ok(())
    }
}
