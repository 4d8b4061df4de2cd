//! Parsing and validating `controller.toml`'s text, key by key (the `[ticketing]` table
//! is parsed by `crate::adapters::config`, `[sla]` by `crate::sla`).

use std::net::SocketAddr;
use std::path::Path;

use deskside_config::{FileKeys, parse_toml};

use super::{
    ConfigError, ControllerConfig, MAX_CLIENT_VALIDITY, MAX_COLLECT_LIMIT, MIN_CLIENT_VALIDITY,
};
use crate::sla::SlaConfig;

pub(super) const SOCKET_ADDR_HINT: &str =
    "not a socket address (HOST:PORT with an IP, e.g. 0.0.0.0:4433)";
const TOP_KEYS: &str = "expected listen, data, [metrics], [log], [certificates], [evidence], [sla], [ticketing], [console], [cluster], [store]";
const STORE_KEYS: &str = "expected url";
const CERTIFICATE_KEYS: &str = "expected validity";
const EVIDENCE_KEYS: &str = "expected max_file_bytes";
const METRICS_KEYS: &str = "expected listen";
const LOG_KEYS: &str = "expected format, level";

/// Parses and validates config text; `path` names the file in errors and anchors the
/// relative paths in it (`data`, `[ticketing]`'s `password_file`/`secret_file`).
/// Environment overrides are not applied.
pub fn parse(text: &str, path: &Path) -> Result<ControllerConfig, ConfigError> {
    let doc = parse_toml(text, path)?;
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
            "console" => {
                config.console = Some(crate::console::config::parse(
                    &f,
                    f.table("console", value)?,
                )?);
            }
            "store" => {
                for (k, v) in f.table("store", value)? {
                    match k.as_str() {
                        "url" => config.store_url = Some(store_url(path, v)?),
                        other => {
                            return Err(f.unknown(&format!("store.{other}"), STORE_KEYS).into());
                        }
                    }
                }
            }
            "cluster" => {
                config.cluster =
                    crate::cluster::ClusterConfig::from_table(&f, f.table("cluster", value)?)?;
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

/// `[store] url`; a refused value is shown without its password.
fn store_url(path: &Path, value: &toml::Value) -> Result<crate::store::PgUrl, ConfigError> {
    let invalid = |shown: String, reason: String| deskside_config::ConfigError::Invalid {
        origin: deskside_config::Origin::File(path.to_owned()),
        key: "store.url".to_owned(),
        value: shown,
        reason,
    };
    let Some(url) = value.as_str() else {
        return Err(invalid(
            deskside_config::render(value),
            "must be a string (in double quotes)".into(),
        )
        .into());
    };
    crate::store::PgUrl::parse(url).map_err(|reason| {
        invalid(
            format!("{:?}", crate::store::PgUrl::hide_password(url)),
            reason,
        )
        .into()
    })
}

fn socket_addr(
    f: &FileKeys<'_>,
    key: &str,
    value: &toml::Value,
) -> Result<SocketAddr, deskside_config::ConfigError> {
    f.string(key, value)?
        .parse()
        .map_err(|_| f.invalid(key, value, SOCKET_ADDR_HINT))
}
