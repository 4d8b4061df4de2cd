//! The controller's configuration: `/etc/deskside/controller.toml` (or `--config`,
//! `$DESKSIDE_CONFIG`), then `DESKSIDE_*` environment overrides; the CLI applies its
//! flags last. Everything — including `[sla]` and `[ticketing]` — is parsed and
//! validated here, before any socket is bound. The annotated example with every key and
//! its default is `packaging/examples/controller.toml` ([`example`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use deskside_agent::config::{FileKeys, env_invalid, parse_log_format};

use crate::adapters::config::TicketingConfig;
use crate::sla::SlaConfig;

pub use deskside_agent::config::{Origin, check_log_level};
pub use deskside_transport::logging::LogFormat;

/// Where the controller looks when neither `--config` nor `$DESKSIDE_CONFIG` names a file.
pub const DEFAULT_PATH: &str = "/etc/deskside/controller.toml";

/// QUIC (UDP) address agents and technicians connect to.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4433));

/// Metrics and health (HTTP over TCP). Loopback by default: the numbers say how many
/// machines are enrolled and online, which is nobody's business off this host unless
/// the admin opens it up.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// The default `tracing` filter for the server.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// A config file is a few KiB; anything this large is not one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Environment variables read by [`load`].
pub mod env {
    /// The config file to read instead of [`super::DEFAULT_PATH`].
    pub const CONFIG: &str = "DESKSIDE_CONFIG";
    pub const LISTEN: &str = "DESKSIDE_LISTEN";
    pub const DATA: &str = "DESKSIDE_DATA";
    pub const METRICS_LISTEN: &str = "DESKSIDE_METRICS_LISTEN";
    pub const LOG_FORMAT: &str = "DESKSIDE_LOG_FORMAT";
    pub const LOG_LEVEL: &str = "DESKSIDE_LOG_LEVEL";
}

const SOCKET_ADDR_HINT: &str = "not a socket address (HOST:PORT with an IP, e.g. 0.0.0.0:4433)";
const TOP_KEYS: &str =
    "expected listen, data, [metrics], [log], [certificates], [evidence], [sla], [ticketing]";
const CERTIFICATE_KEYS: &str = "expected validity";
const EVIDENCE_KEYS: &str = "expected max_file_bytes";
/// Largest accepted `evidence.max_file_bytes`: a file this size already takes minutes
/// to move; past it, copy the disk some other way.
pub const MAX_COLLECT_LIMIT: u64 = 64 * 1024 * 1024 * 1024;
/// Shortest accepted `certificates.validity`: clients renew at two thirds of it, and a
/// laptop asleep over a weekend must not come back expired.
pub const MIN_CLIENT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest accepted `certificates.validity`: well inside the CA's own ten years.
pub const MAX_CLIENT_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
const METRICS_KEYS: &str = "expected listen";
const LOG_KEYS: &str = "expected format, level";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read, bad TOML, or a bad `listen`/`data`/`[metrics]`/`[log]`
    /// value or environment override.
    #[error(transparent)]
    Settings(#[from] deskside_agent::config::ConfigError),
    /// A bad `[ticketing]` table (the message names the file and key).
    #[error(transparent)]
    Ticketing(#[from] crate::adapters::config::ConfigError),
    /// A bad `[sla]` table.
    #[error("{}: {message}", path.display())]
    Sla { path: PathBuf, message: String },
}

impl ConfigError {
    /// The process exit status for any configuration error (as linkerd2-proxy).
    pub const EXIT_CODE: u8 = 64;
}

/// The controller's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Data directory; `None` means the CLI's default (`/var/lib/deskside` for root).
    pub data: Option<PathBuf>,
    /// Metrics and health listen address (TCP).
    pub metrics_listen: SocketAddr,
    pub log_format: LogFormat,
    /// A `tracing` filter directive, already checked by [`check_log_level`].
    pub log_level: String,
    pub sla: SlaConfig,
    pub ticketing: TicketingConfig,
    /// Validity of agent and technician certificates (`[certificates] validity`).
    pub client_validity: Duration,
    /// Largest file `deskside collect` stores (`[evidence] max_file_bytes`).
    pub max_collect_bytes: u64,
    /// The file that was read; `None` when the built-in defaults are in force.
    pub source: Option<PathBuf>,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            listen: DEFAULT_LISTEN,
            data: None,
            metrics_listen: DEFAULT_METRICS_LISTEN,
            log_format: LogFormat::Human,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            sla: SlaConfig::default(),
            ticketing: TicketingConfig::default(),
            client_validity: crate::ca::CLIENT_VALIDITY,
            max_collect_bytes: deskside_proto::limits::MAX_COLLECT_BYTES,
            source: None,
        }
    }
}

/// The annotated example config (`packaging/examples/controller.toml`).
pub fn example() -> &'static str {
    include_str!("../../packaging/examples/controller.toml")
}

/// Loads the config: `path` (from `--config`), else `$DESKSIDE_CONFIG`, else
/// [`DEFAULT_PATH`] if it exists, else the built-in defaults; then applies the
/// environment overrides read through `env` (pass `&|k| std::env::var(k).ok()`).
/// Empty environment values count as unset.
pub fn load(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ControllerConfig, ConfigError> {
    load_with_default(path, env, Path::new(DEFAULT_PATH))
}

fn load_with_default(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    default: &Path,
) -> Result<ControllerConfig, ConfigError> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    let chosen = match (path, get(env::CONFIG)) {
        (Some(p), _) => Some((p.to_owned(), "--config")),
        (None, Some(p)) => Some((PathBuf::from(p), env::CONFIG)),
        // An unreadable default (permissions) is reported rather than skipped.
        (None, None) => match default.try_exists() {
            Ok(false) => None,
            _ => Some((default.to_owned(), "the default location")),
        },
    };
    let mut config = match chosen {
        Some((path, named_by)) => parse(&read_config(&path, named_by)?, &path)?,
        None => ControllerConfig::default(),
    };
    config.apply_env(&get)?;
    Ok(config)
}

fn read_config(path: &Path, named_by: &str) -> Result<String, ConfigError> {
    let read_error = |source| {
        ConfigError::Settings(deskside_agent::config::ConfigError::Read {
            path: path.to_owned(),
            named_by: named_by.to_owned(),
            source,
        })
    };
    if let Ok(m) = std::fs::metadata(path)
        && m.len() > MAX_CONFIG_BYTES
    {
        return Err(read_error(std::io::Error::other(format!(
            "{} bytes is too large for a config file (limit {MAX_CONFIG_BYTES})",
            m.len()
        ))));
    }
    std::fs::read_to_string(path).map_err(read_error)
}

/// Parses and validates config text; `path` names the file in errors and anchors the
/// relative paths in it (`data`, `[ticketing]`'s `password_file`/`secret_file`).
/// Environment overrides are not applied.
pub fn parse(text: &str, path: &Path) -> Result<ControllerConfig, ConfigError> {
    let doc: toml::Table =
        text.parse().map_err(
            |e: toml::de::Error| deskside_agent::config::ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string().trim_end().to_owned(),
            },
        )?;
    let f = FileKeys { path };
    let mut config = ControllerConfig {
        source: Some(path.to_owned()),
        ..ControllerConfig::default()
    };
    for (key, value) in &doc {
        match key.as_str() {
            "listen" => config.listen = socket_addr(&f, "listen", value)?,
            "data" => config.data = Some(f.dir("data", value)?),
            "metrics" => {
                for (k, v) in f.table("metrics", value)? {
                    match k.as_str() {
                        "listen" => config.metrics_listen = socket_addr(&f, "metrics.listen", v)?,
                        other => {
                            return Err(f
                                .unknown(&format!("metrics.{other}"), METRICS_KEYS)
                                .into());
                        }
                    }
                }
            }
            "log" => {
                for (k, v) in f.table("log", value)? {
                    match k.as_str() {
                        "format" => config.log_format = f.log_format("log.format", v)?,
                        "level" => config.log_level = f.log_level("log.level", v)?,
                        other => return Err(f.unknown(&format!("log.{other}"), LOG_KEYS).into()),
                    }
                }
            }
            "certificates" => {
                for (k, v) in f.table("certificates", value)? {
                    match k.as_str() {
                        "validity" => {
                            let d = f.duration("certificates.validity", v)?;
                            if !(MIN_CLIENT_VALIDITY..=MAX_CLIENT_VALIDITY).contains(&d) {
                                return Err(f
                                    .invalid(
                                        "certificates.validity",
                                        v,
                                        "must be between 7 days and 2 years",
                                    )
                                    .into());
                            }
                            config.client_validity = d;
                        }
                        other => {
                            return Err(f
                                .unknown(&format!("certificates.{other}"), CERTIFICATE_KEYS)
                                .into());
                        }
                    }
                }
            }
            "evidence" => {
                for (k, v) in f.table("evidence", value)? {
                    match k.as_str() {
                        "max_file_bytes" => {
                            let limit = v
                                .as_integer()
                                .and_then(|n| u64::try_from(n).ok())
                                .filter(|n| (1..=MAX_COLLECT_LIMIT).contains(n))
                                .ok_or_else(|| {
                                    f.invalid(
                                        "evidence.max_file_bytes",
                                        v,
                                        format!("must be a whole number of bytes from 1 to {MAX_COLLECT_LIMIT}"),
                                    )
                                })?;
                            config.max_collect_bytes = limit;
                        }
                        other => {
                            return Err(f
                                .unknown(&format!("evidence.{other}"), EVIDENCE_KEYS)
                                .into());
                        }
                    }
                }
            }
            "sla" => {
                config.sla = SlaConfig::from_table(f.table("sla", value)?).map_err(|message| {
                    ConfigError::Sla {
                        path: path.to_owned(),
                        message,
                    }
                })?;
            }
            // Parsed below, by its own module, from the same text.
            "ticketing" => {
                f.table("ticketing", value)?;
            }
            other => return Err(f.unknown(other, TOP_KEYS).into()),
        }
    }
    let base = path.parent().unwrap_or(Path::new(""));
    config.ticketing = crate::adapters::config::parse(text, path, base)?;
    Ok(config)
}

fn socket_addr(
    f: &FileKeys<'_>,
    key: &str,
    value: &toml::Value,
) -> Result<SocketAddr, deskside_agent::config::ConfigError> {
    f.string(key, value)?
        .parse()
        .map_err(|_| f.invalid(key, value, SOCKET_ADDR_HINT))
}

impl ControllerConfig {
    /// Applies `DESKSIDE_*` overrides; `get` returns `None` for unset variables. Callers
    /// pass a `get` that treats empty values as unset, as [`load`] does.
    pub fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let addr = |var: &str, v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|_| env_invalid(var, v, SOCKET_ADDR_HINT))
        };
        if let Some(v) = get(env::LISTEN) {
            self.listen = addr(env::LISTEN, &v)?;
        }
        if let Some(v) = get(env::DATA) {
            self.data = Some(PathBuf::from(v));
        }
        if let Some(v) = get(env::METRICS_LISTEN) {
            self.metrics_listen = addr(env::METRICS_LISTEN, &v)?;
        }
        if let Some(v) = get(env::LOG_FORMAT) {
            self.log_format =
                parse_log_format(&v).map_err(|reason| env_invalid(env::LOG_FORMAT, &v, reason))?;
        }
        if let Some(v) = get(env::LOG_LEVEL) {
            check_log_level(&v).map_err(|reason| env_invalid(env::LOG_LEVEL, &v, reason))?;
            self.log_level = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::adapters::config::Backend;

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
        let path = dir.join("controller.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    #[test]
    fn evidence_file_limit_is_read_and_bounded() -> anyhow::Result<()> {
        let path = Path::new("/etc/deskside/controller.toml");
        assert_eq!(
            parse("", path)?.max_collect_bytes,
            deskside_proto::limits::MAX_COLLECT_BYTES
        );
        let c = parse("[evidence]\nmax_file_bytes = 1048576\n", path)?;
        assert_eq!(c.max_collect_bytes, 1_048_576);
        for bad in ["0", "-1", "\"1G\"", "68719476737"] {
            let text = format!("[evidence]\nmax_file_bytes = {bad}\n");
            let e = parse(&text, path)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("evidence.max_file_bytes"), "{bad}: {e}");
        }
        Ok(())
    }

    fn load_err(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
        match load(Some(path), env) {
            Ok(c) => anyhow::bail!("accepted: {c:?}"),
            Err(e) => Ok(e.to_string()),
        }
    }

    #[test]
    fn no_file_anywhere_means_defaults() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let c = load_with_default(None, &no_env, &dir.path().join("absent.toml"))?;
        assert_eq!(c, ControllerConfig::default());
        assert_eq!(c.listen.to_string(), "0.0.0.0:4433");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
        assert!(c.metrics_listen.ip().is_loopback());
        Ok(())
    }

    #[test]
    fn the_default_location_is_read_when_present() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = write(dir.path(), "listen = \"127.0.0.1:5000\"\n")?;
        let c = load_with_default(None, &no_env, &path)?;
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.source.as_deref(), Some(path.as_path()));
        Ok(())
    }

    #[test]
    fn file_then_env() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("rt-password"), "pw\n")?;
        let path = write(
            dir.path(),
            r#"
listen = "[::]:4433"
data = "data"
[metrics]
listen = "0.0.0.0:9000"
[log]
format = "json"
level = "info,deskside_controller=debug"
[sla.high]
response = "30m"
resolution = "2h"
[ticketing]
backend = "rt"
[ticketing.rt]
url = "https://rt.example.org"
user = "deskside"
password_file = "rt-password"
[ticketing.rt.queues]
l1 = "Helpdesk"
l2 = "Desktop"
l3 = "Specialists"
"#,
        )?;
        let c = load(Some(&path), &no_env)?;
        assert_eq!(c.listen.to_string(), "[::]:4433");
        assert_eq!(c.data, Some(dir.path().join("data")));
        assert_eq!(c.metrics_listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_level, "info,deskside_controller=debug");
        assert_eq!(c.sla.target("high").response, Duration::from_secs(1800));
        let Backend::Rt(rt) = &c.ticketing.backend else {
            anyhow::bail!("expected rt, got {:?}", c.ticketing);
        };
        // Relative secret files are found next to the config file.
        assert_eq!(rt.password.expose(), "pw");

        let env = env_of(&[
            (
                env::CONFIG,
                "/nonexistent/ignored-when-a-path-is-given.toml",
            ),
            (env::LISTEN, "127.0.0.1:1"),
            (env::DATA, "/srv/deskside"),
            (env::METRICS_LISTEN, "127.0.0.1:2"),
            (env::LOG_FORMAT, "human"),
            (env::LOG_LEVEL, ""),
        ]);
        let c = load(Some(&path), &env)?;
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.data, Some(PathBuf::from("/srv/deskside")));
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:2");
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(
            c.log_level, "info,deskside_controller=debug",
            "an empty variable is unset"
        );

        let c = load(
            None,
            &env_of(&[(env::CONFIG, path.to_str().unwrap_or_default())]),
        )?;
        assert_eq!(c.source.as_deref(), Some(path.as_path()));
        Ok(())
    }

    #[test]
    fn errors_name_the_file_key_value_and_reason() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cases = [
            (
                "listen = \"localhost:99999\"\n",
                ": listen = \"localhost:99999\": not a socket address (HOST:PORT with an IP, e.g. 0.0.0.0:4433)",
            ),
            ("listen = 4433\n", "listen = 4433: must be a string"),
            (
                "[metrics]\nlisten = \"9464\"\n",
                "metrics.listen = \"9464\": not a socket address",
            ),
            (
                "[metrics]\npath = \"/m\"\n",
                "metrics.path: unknown key; expected listen",
            ),
            (
                "[log]\nformat = \"xml\"\n",
                "log.format = \"xml\": not a log format (human or json)",
            ),
            (
                "[log]\nlevel = \"loud\"\n",
                "log.level = \"loud\": \"loud\" is not a level",
            ),
            (
                "lisen = \"0.0.0.0:1\"\n",
                "lisen: unknown key; expected listen, data",
            ),
            ("[tickets]\n", "tickets: unknown key"),
            ("data = \"\"\n", "data = \"\": is empty"),
            ("sla = 1\n", "sla = 1: must be a table"),
            (
                "[sla.asap]\nresponse = \"1h\"\nresolution = \"2h\"\n",
                "sla.asap: unknown priority",
            ),
            ("[ticketing]\nbackend = \"rt\"\n", "ticketing.backend"),
            (
                "listen = \"0.0.0.0:1\"\nlisten = \"0.0.0.0:2\"\n",
                "not valid TOML",
            ),
        ];
        for (text, want) in cases {
            let path = write(dir.path(), text)?;
            let err = load_err(&path, &no_env)?;
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(err.starts_with(&path.display().to_string()), "{err:?}");
        }
        Ok(())
    }

    #[test]
    fn env_errors_name_the_variable_and_value() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = write(dir.path(), "")?;
        let cases = [
            (
                env::LISTEN,
                "localhost:4433",
                "environment: DESKSIDE_LISTEN = \"localhost:4433\": not a socket address",
            ),
            (
                env::METRICS_LISTEN,
                "9464",
                "environment: DESKSIDE_METRICS_LISTEN = \"9464\": not a socket address",
            ),
            (
                env::LOG_FORMAT,
                "yaml",
                "environment: DESKSIDE_LOG_FORMAT = \"yaml\": not a log format",
            ),
            (
                env::LOG_LEVEL,
                "info,a=b",
                "environment: DESKSIDE_LOG_LEVEL = \"info,a=b\": not a tracing filter",
            ),
        ];
        for (var, value, want) in cases {
            let err = load_err(&path, &env_of(&[(var, value)]))?;
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let err = load(None, &env_of(&[(env::CONFIG, "/nonexistent/c.toml")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("cannot read /nonexistent/c.toml (named by DESKSIDE_CONFIG)"),
            "{err}"
        );
        assert_eq!(ConfigError::EXIT_CODE, 64);
        Ok(())
    }

    /// Turns `#key = value` / `#[table]` lines (no space after `#`) into settings, in the
    /// sections whose header starts with `[prefix`.
    fn uncomment(text: &str, prefix: &str) -> String {
        let mut on = false;
        let mut out = Vec::new();
        for line in text.lines() {
            let setting = line
                .strip_prefix('#')
                .filter(|r| r.starts_with(|c: char| c == '[' || c.is_ascii_lowercase()));
            if let Some(header) = line.trim_start_matches('#').strip_prefix('[') {
                on = header.starts_with(prefix) && setting.is_some();
            }
            out.push(match setting {
                Some(rest) if on => rest,
                _ => line,
            });
        }
        out.join("\n")
    }

    #[test]
    fn the_example_parses_and_shows_the_defaults() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = write(dir.path(), example())?;
        let c = load(Some(&path), &no_env)?;
        assert_eq!(
            c,
            ControllerConfig {
                source: Some(path.clone()),
                ..ControllerConfig::default()
            }
        );
        // The commented-out [sla] tables spell out the built-in targets.
        let path = write(dir.path(), &uncomment(example(), "sla"))?;
        assert!(std::fs::read_to_string(&path)?.contains("\n[sla.urgent]"));
        let c = load(Some(&path), &no_env)?;
        assert_eq!(c.sla, SlaConfig::default());
        // The commented-out [ticketing] example is valid once its password file exists.
        std::fs::write(dir.path().join("rt-password"), "pw\n")?;
        let path = write(dir.path(), &uncomment(example(), "ticketing"))?;
        let c = load(Some(&path), &no_env)?;
        assert!(matches!(c.ticketing.backend, Backend::Rt(_)), "{c:?}");
        // And `data`, uncommented, is the service's default data directory.
        let top = example().replace("#data = ", "data = ");
        let c = parse(&top, &path)?;
        assert_eq!(c.data, Some(PathBuf::from("/var/lib/deskside")));
        Ok(())
    }

    #[test]
    fn certificate_validity_is_read_and_bounded() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.toml");
        let c = parse("[certificates]\nvalidity = \"30d\"\n", &path)?;
        assert_eq!(c.client_validity, Duration::from_secs(30 * 24 * 3600));
        let short = parse("[certificates]\nvalidity = \"1h\"\n", &path);
        assert!(
            short
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().contains("between 7 days and 2 years")),
            "{short:?}"
        );
        let odd = parse("[certificates]\nrenew = \"1d\"\n", &path);
        assert!(odd.is_err(), "{odd:?}");
        Ok(())
    }
}
