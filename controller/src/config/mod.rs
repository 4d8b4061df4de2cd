//! The controller's configuration: `/etc/deskside/controller.toml` (or `--config`,
//! `$DESKSIDE_CONFIG`), then `DESKSIDE_*` environment overrides; the CLI applies its
//! flags last. Everything — including `[sla]` and `[ticketing]` — is parsed and
//! validated here, before any socket is bound. The annotated example with every key and
//! its default is `packaging/examples/controller.toml` ([`example`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use deskside_config::{env_invalid, parse_log_format, read_config};

use crate::adapters::config::TicketingConfig;

mod parse;

use crate::sla::SlaConfig;
use parse::SOCKET_ADDR_HINT;
pub use parse::parse;

pub use deskside_config::{LogFormat, Origin, check_log_level};

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
    /// `[store] url`: a PostgreSQL URL (keeps its password out of the file).
    pub const STORE_URL: &str = "DESKSIDE_STORE_URL";
}

/// Largest accepted `evidence.max_file_bytes`: a file this size already takes minutes
/// to move; past it, copy the disk some other way.
pub const MAX_COLLECT_LIMIT: u64 = 64 * 1024 * 1024 * 1024;
/// Shortest accepted `certificates.validity`: clients renew at two thirds of it, and a
/// laptop asleep over a weekend must not come back expired.
pub const MIN_CLIENT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest accepted `certificates.validity`: well inside the CA's own ten years.
pub const MAX_CLIENT_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read, bad TOML, or a bad `listen`/`data`/`[metrics]`/`[log]`
    /// value or environment override.
    #[error(transparent)]
    Settings(#[from] deskside_config::ConfigError),
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
    /// Where evidence blobs live (`[evidence] dir`): one directory all nodes of a
    /// cluster share. `None` means `<data>/evidence`.
    pub evidence_dir: Option<PathBuf>,
    /// The web console (`[console]`); `None` when the table is absent.
    pub console: Option<crate::console::ConsoleConfig>,
    /// The shared PostgreSQL store (`[store] url`); `None`: SQLite in the data directory.
    pub store_url: Option<crate::store::PgUrl>,
    /// This node's name, the cluster's controller addresses and the NATS server the
    /// nodes route through (`[cluster]`).
    pub cluster: crate::cluster::ClusterConfig,
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
            evidence_dir: None,
            console: None,
            store_url: None,
            cluster: crate::cluster::ClusterConfig::default(),
            source: None,
        }
    }
}

/// The annotated example config (`packaging/examples/controller.toml`).
pub fn example() -> &'static str {
    include_str!("../../../packaging/examples/controller.toml")
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
        Some((path, named_by)) => parse(&read_config(&path, named_by, MAX_CONFIG_BYTES)?, &path)?,
        None => ControllerConfig::default(),
    };
    config.apply_env(&get)?;
    Ok(config)
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
        if let Some(v) = get(env::STORE_URL) {
            self.store_url = Some(crate::store::PgUrl::parse(&v).map_err(|reason| {
                env_invalid(
                    env::STORE_URL,
                    &crate::store::PgUrl::hide_password(&v),
                    reason,
                )
            })?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
