//! `[store] url`: a validated `postgres://` URL, shown and logged only without its
//! password.

use std::fmt;

use postgres::config::{Host, SslMode};

use super::CONNECT_TIMEOUT;
use crate::store::{StoreError, StoreResult};

/// A validated `postgres://` URL. Shown and logged only without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// Checks a `[store] url`; the reason it is refused otherwise.
    pub fn parse(url: &str) -> Result<PgUrl, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "must be a postgres:// URL, e.g. \"postgres://deskside@db.example:5432/deskside\""
                    .into(),
            );
        }
        let config: postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if config.get_hosts().is_empty() {
            return Err("names no host (postgres://USER@HOST:PORT/DATABASE)".into());
        }
        if config.get_user().is_none() {
            return Err("names no user (postgres://USER@HOST:PORT/DATABASE)".into());
        }
        if config.get_dbname().is_none() {
            return Err("names no database (postgres://USER@HOST:PORT/DATABASE)".into());
        }
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(
                "asks for TLS (sslmode), which the controller does not speak to PostgreSQL; \
                 reach the database over a trusted network or a local socket and drop sslmode"
                    .into(),
            );
        }
        Ok(PgUrl(url.to_owned()))
    }

    /// The whole URL, password included: for connecting, never for showing or logging.
    pub fn secret_url(&self) -> &str {
        &self.0
    }

    /// `url` with any password replaced by `***` (in the user part and as a
    /// `password=` parameter), for showing a URL that may not parse.
    pub fn hide_password(url: &str) -> String {
        let (head, query) = match url.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (url, None),
        };
        let mut out = match head.split_once("://") {
            Some((scheme, rest)) => {
                let (authority, path) = match rest.find('/') {
                    Some(i) => rest.split_at(i),
                    None => (rest, ""),
                };
                let authority = match authority.rsplit_once('@') {
                    Some((user, host)) => match user.split_once(':') {
                        Some((name, _)) => format!("{name}:***@{host}"),
                        None => format!("{user}@{host}"),
                    },
                    None => authority.to_owned(),
                };
                format!("{scheme}://{authority}{path}")
            }
            // Not a URL: it could be `key=value` pairs holding a password.
            None => return "(not shown: not a URL)".to_owned(),
        };
        if let Some(query) = query {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push('?');
            out.push_str(&params.join("&"));
        }
        out
    }

    pub(super) fn config(&self) -> StoreResult<postgres::Config> {
        let mut config: postgres::Config = self.0.parse().map_err(|e| StoreError::Connect {
            target: self.to_string(),
            cause: e,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("deskside");
        Ok(config)
    }
}

/// `postgres://user@host:port/database`: never the password.
impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(config) = self.0.parse::<postgres::Config>() else {
            return f.write_str("postgres://(unreadable URL)");
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => path.display().to_string(),
                };
                match config.get_ports().get(i).or(config.get_ports().first()) {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                }
            })
            .collect();
        write!(
            f,
            "postgres://{}@{}/{}",
            config.get_user().unwrap_or(""),
            hosts.join(","),
            config.get_dbname().unwrap_or("")
        )
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_the_password() {
        let url = PgUrl::parse("postgres://deskside:s3cret@db.example:5433/desk");
        let url = url.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.to_string(), "postgres://deskside@db.example:5433/desk");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            PgUrl::hide_password("postgres://u:pw@h:1/d?password=x&sslmode=disable"),
            "postgres://u:***@h:1/d?password=***&sslmode=disable"
        );
        assert_eq!(
            PgUrl::hide_password("host=h password=pw"),
            "(not shown: not a URL)"
        );
        for bad in [
            "mysql://x@y/z",
            "postgres://db.example/desk",
            "postgres://u@db.example",
            "postgres://u@db.example/desk?sslmode=require",
        ] {
            assert!(PgUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
