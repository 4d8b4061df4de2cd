//! `[ticketing]` as written in the file, and the checks that turn it into a
//! [`TicketingConfig`](super::TicketingConfig): URLs and the http:// rule, queues,
//! timeouts, secrets inline or from a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{
    ConfigError, DEFAULT_TIMEOUT, MAX_SECRET_FILE_BYTES, MAX_TIMEOUT_SECS, RtConfig, Secret,
    TierQueues, WebhookConfig,
};

// ---- the file as written ------------------------------------------------------------

/// Only `[ticketing]` is read here; other sections belong to other parts of the
/// controller, so unknown top-level keys are not this module's business.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ControllerFile {
    #[serde(default)]
    pub(super) ticketing: Option<RawTicketing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTicketing {
    #[serde(default)]
    pub(super) backend: RawBackend,
    pub(super) rt: Option<RawRt>,
    pub(super) webhook: Option<RawWebhook>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawBackend {
    #[default]
    None,
    Rt,
    Webhook,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRt {
    url: String,
    user: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
    queues: RawQueues,
    timeout_secs: Option<u64>,
    #[serde(default)]
    allow_insecure_http: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueues {
    l1: String,
    l2: String,
    l3: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    url: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    timeout_secs: Option<u64>,
    #[serde(default)]
    allow_insecure_http: bool,
}

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
    pub(super) data_root: &'a Path,
}

impl Validator<'_> {
    pub(super) fn invalid(&self, key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key,
            reason: reason.into(),
        }
    }

    pub(super) fn rt(&self, raw: RawRt) -> Result<RtConfig, ConfigError> {
        let (url, _host, insecure_http) = self.http_url(
            ("ticketing.rt.url", &raw.url),
            ("ticketing.rt.allow_insecure_http", raw.allow_insecure_http),
            "the RT password and every evidence bundle",
        )?;
        let user = raw.user.trim();
        if user.is_empty() || user.contains(':') {
            return Err(self.invalid(
                "ticketing.rt.user",
                "must be an RT user name (not empty, no ':')",
            ));
        }
        let password = self.secret(
            ("ticketing.rt.password", raw.password),
            ("ticketing.rt.password_file", raw.password_file),
        )?;
        let queues = TierQueues {
            l1: self.queue("ticketing.rt.queues.l1", raw.queues.l1)?,
            l2: self.queue("ticketing.rt.queues.l2", raw.queues.l2)?,
            l3: self.queue("ticketing.rt.queues.l3", raw.queues.l3)?,
        };
        Ok(RtConfig {
            url,
            user: user.to_owned(),
            password,
            queues,
            timeout: self.timeout("ticketing.rt.timeout_secs", raw.timeout_secs)?,
            insecure_http,
        })
    }

    pub(super) fn webhook(&self, raw: RawWebhook) -> Result<WebhookConfig, ConfigError> {
        let (url, host, insecure_http) = self.http_url(
            ("ticketing.webhook.url", &raw.url),
            (
                "ticketing.webhook.allow_insecure_http",
                raw.allow_insecure_http,
            ),
            "every evidence report and its signature",
        )?;
        let secret = self.secret(
            ("ticketing.webhook.secret", raw.secret),
            ("ticketing.webhook.secret_file", raw.secret_file),
        )?;
        Ok(WebhookConfig {
            url,
            host,
            secret,
            timeout: self.timeout("ticketing.webhook.timeout_secs", raw.timeout_secs)?,
            insecure_http,
        })
    }

    /// An absolute `https://` URL, or `http://` to loopback, or `http://` anywhere when
    /// `allow` says so; returns it without a trailing slash, its host, and whether it is
    /// plain HTTP off loopback. `carries` says what would go out in clear.
    fn http_url(
        &self,
        (key, raw): (&'static str, &str),
        (allow_key, allow): (&'static str, bool),
        carries: &str,
    ) -> Result<(String, String, bool), ConfigError> {
        let trimmed = raw.trim().trim_end_matches('/');
        let uri: ureq::http::Uri = trimmed
            .parse()
            .map_err(|e| self.invalid(key, format!("{raw:?} is not a URL: {e}")))?;
        let plain = match uri.scheme_str() {
            Some("https") => false,
            Some("http") => true,
            _ => {
                return Err(self.invalid(
                    key,
                    format!("{raw:?} must start with https:// (or http:// to loopback)"),
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| self.invalid(key, format!("{raw:?} has no host")))?;
        if uri.query().is_some() {
            return Err(self.invalid(key, format!("{raw:?} must not have a query string")));
        }
        let insecure = plain && !is_loopback(host);
        if insecure && !allow {
            return Err(self.invalid(
                key,
                format!(
                    "{raw:?} is plain http:// to {host}, which is not loopback: {carries} would \
                     cross the network unencrypted. Use https://, or if the path to {host} is \
                     trusted, set {allow_key} = true (the controller then warns at start and in \
                     `deskside status`)"
                ),
            ));
        }
        Ok((trimmed.to_owned(), host.to_owned(), insecure))
    }

    fn queue(&self, key: &'static str, name: String) -> Result<String, ConfigError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(self.invalid(key, "must name an RT queue (it is empty)"));
        }
        Ok(name.to_owned())
    }

    fn timeout(&self, key: &'static str, secs: Option<u64>) -> Result<Duration, ConfigError> {
        match secs {
            None => Ok(DEFAULT_TIMEOUT),
            Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Ok(Duration::from_secs(s)),
            Some(s) => Err(self.invalid(
                key,
                format!("{s} is out of range: use 1 to {MAX_TIMEOUT_SECS} seconds"),
            )),
        }
    }

    /// Exactly one of an inline secret and a file holding it (relative to the data dir;
    /// one trailing newline is ignored).
    fn secret(
        &self,
        (inline_key, inline): (&'static str, Option<String>),
        (file_key, file): (&'static str, Option<PathBuf>),
    ) -> Result<Secret, ConfigError> {
        let value = match (inline, file) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    inline_key,
                    format!("set either {inline_key} or {file_key}, not both"),
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    inline_key,
                    format!("is missing: set {inline_key} or {file_key}"),
                ));
            }
            (Some(s), None) => s,
            (None, Some(file)) => {
                let full = self.data_root.join(&file);
                let meta = std::fs::metadata(&full).map_err(|e| {
                    self.invalid(file_key, format!("cannot read {}: {e}", full.display()))
                })?;
                if meta.len() > MAX_SECRET_FILE_BYTES {
                    return Err(self.invalid(
                        file_key,
                        format!(
                            "{} is {} bytes; a secret file holds one line",
                            full.display(),
                            meta.len()
                        ),
                    ));
                }
                let text = std::fs::read_to_string(&full).map_err(|e| {
                    self.invalid(file_key, format!("cannot read {}: {e}", full.display()))
                })?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                text.strip_suffix('\r').unwrap_or(text).to_owned()
            }
        };
        if value.is_empty() {
            return Err(self.invalid(inline_key, "is empty"));
        }
        Ok(Secret(value))
    }
}

/// `localhost`, 127.0.0.0/8 or ::1: traffic that never leaves the machine.
fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
