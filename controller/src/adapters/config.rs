//! The `[ticketing]` section of the controller's config file: which external ticket
//! system escalations are pushed to, and how to reach it. Parsed and validated before
//! anything connects; every error names the key and the file.
//!
//! ```toml
//! [ticketing]
//! backend = "rt"                 # "none" (default), "rt" or "webhook"
//!
//! [ticketing.rt]
//! url = "http://127.0.0.1:8080"  # RT's base URL; REST 2.0 lives under /REST/2.0
//! user = "deskside"
//! password_file = "rt-password"  # or password = "…"; relative to the config file's dir
//! timeout_secs = 30              # optional, per request
//! # allow_insecure_http = true   # only to send the password in clear to a non-loopback host
//!
//! [ticketing.rt.queues]
//! l1 = "Helpdesk"
//! l2 = "Desktop Engineering"
//! l3 = "Specialists"
//!
//! [ticketing.webhook]
//! url = "https://hooks.example.org/deskside"
//! secret_file = "webhook-secret" # or secret = "…"
//! timeout_secs = 30              # optional
//! # allow_insecure_http = true   # as for RT
//! ```
//!
//! `http://` carries the RT password and every evidence bundle in clear, so it is
//! refused for any host but loopback unless the section says `allow_insecure_http =
//! true`; then [`TicketingConfig::warnings`] says so at start and in `deskside status`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deskside_proto::msg::identity::Tier;
use serde::Deserialize;

/// The controller's config file inside its data directory.
pub const CONTROLLER_TOML: &str = "controller.toml";

/// Default per-request timeout. RT comments carry every evidence file, a few MiB at
/// most; 30 s is generous on a LAN and still frees the worker if RT hangs.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest `timeout_secs` accepted: longer than this, a hung peer stalls the outbox.
pub const MAX_TIMEOUT_SECS: u64 = 600;

/// A secret file larger than this is not a password.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Where to push escalations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketingConfig {
    pub backend: Backend,
}

impl TicketingConfig {
    /// What the operator should know about this config: today, that it sends
    /// credentials and evidence over plain HTTP because they allowed it.
    pub fn warnings(&self) -> Vec<String> {
        let (key, url, insecure) = match &self.backend {
            Backend::None => return Vec::new(),
            Backend::Rt(rt) => ("ticketing.rt", &rt.url, rt.insecure_http),
            Backend::Webhook(hook) => ("ticketing.webhook", &hook.url, hook.insecure_http),
        };
        if !insecure {
            return Vec::new();
        }
        vec![format!(
            "{key}.url {url} is plain HTTP to a host that is not loopback ({key}.allow_insecure_http = true): \
             the credentials and every evidence bundle cross the network unencrypted; use https://"
        )]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// Tickets live only in Deskside.
    #[default]
    None,
    Rt(RtConfig),
    Webhook(WebhookConfig),
}

/// Request Tracker (REST 2.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtConfig {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub user: String,
    pub password: Secret,
    pub queues: TierQueues,
    pub timeout: Duration,
    /// `url` is `http://` to a host that is not loopback, allowed by
    /// `allow_insecure_http = true`.
    pub insecure_http: bool,
}

/// The RT queue each Deskside tier's tickets belong in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierQueues {
    pub l1: String,
    pub l2: String,
    pub l3: String,
}

impl TierQueues {
    pub fn for_tier(&self, tier: Tier) -> &str {
        match tier {
            Tier::L1 => &self.l1,
            Tier::L2 => &self.l2,
            Tier::L3 => &self.l3,
        }
    }
}

/// A generic webhook: JSON POST signed with HMAC-SHA256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    /// Host of `url`, for the external reference `webhook:<host>`.
    pub host: String,
    pub secret: Secret,
    pub timeout: Duration,
    /// As [`RtConfig::insecure_http`].
    pub insecure_http: bool,
}

/// A password or key; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid TOML for deskside: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {key}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
}

// ---- the file as written ------------------------------------------------------------

/// Only `[ticketing]` is read here; other sections belong to other parts of the
/// controller, so unknown top-level keys are not this module's business.
#[derive(Debug, Default, Deserialize)]
struct ControllerFile {
    #[serde(default)]
    ticketing: Option<RawTicketing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTicketing {
    #[serde(default)]
    backend: RawBackend,
    rt: Option<RawRt>,
    webhook: Option<RawWebhook>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawBackend {
    #[default]
    None,
    Rt,
    Webhook,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRt {
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
struct RawQueues {
    l1: String,
    l2: String,
    l3: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    timeout_secs: Option<u64>,
    #[serde(default)]
    allow_insecure_http: bool,
}

// ---- loading --------------------------------------------------------------------------

/// Reads `[ticketing]` from `<data_root>/controller.toml`. A missing file (or section)
/// means backend `none`.
pub fn load(data_root: &Path) -> Result<TicketingConfig, ConfigError> {
    let path = data_root.join(CONTROLLER_TOML);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TicketingConfig::default());
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    parse(&text, &path, data_root)
}

/// Parses and validates config text; `path` is only for messages, `data_root` resolves
/// relative `password_file`/`secret_file` paths.
pub fn parse(text: &str, path: &Path, data_root: &Path) -> Result<TicketingConfig, ConfigError> {
    let file: ControllerFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let Some(raw) = file.ticketing else {
        return Ok(TicketingConfig::default());
    };
    let v = Validator { path, data_root };
    let backend = match raw.backend {
        RawBackend::None => Backend::None,
        RawBackend::Rt => {
            let rt = raw.rt.ok_or_else(|| {
                v.invalid(
                    "ticketing.backend",
                    "is \"rt\" but there is no [ticketing.rt] section (url, user, password or password_file, [ticketing.rt.queues])",
                )
            })?;
            Backend::Rt(v.rt(rt)?)
        }
        RawBackend::Webhook => {
            let hook = raw.webhook.ok_or_else(|| {
                v.invalid(
                    "ticketing.backend",
                    "is \"webhook\" but there is no [ticketing.webhook] section (url, secret or secret_file)",
                )
            })?;
            Backend::Webhook(v.webhook(hook)?)
        }
    };
    Ok(TicketingConfig { backend })
}

struct Validator<'a> {
    path: &'a Path,
    data_root: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key,
            reason: reason.into(),
        }
    }

    fn rt(&self, raw: RawRt) -> Result<RtConfig, ConfigError> {
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

    fn webhook(&self, raw: RawWebhook) -> Result<WebhookConfig, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<TicketingConfig, ConfigError> {
        parse(text, &dir.join(CONTROLLER_TOML), dir)
    }

    const RT: &str = r#"
[ticketing]
backend = "rt"
[ticketing.rt]
url = "http://127.0.0.1:8080/"
user = "deskside"
password = "s3cret"
[ticketing.rt.queues]
l1 = "Helpdesk"
l2 = "Desktop Engineering"
l3 = "Specialists"
"#;

    #[test]
    fn missing_file_or_section_is_backend_none() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(load(dir.path())?.backend, Backend::None);
        std::fs::write(dir.path().join(CONTROLLER_TOML), "[other]\nx = 1\n")?;
        assert_eq!(load(dir.path())?.backend, Backend::None);
        Ok(())
    }

    #[test]
    fn rt_section_is_validated() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let Backend::Rt(rt) = parse_in(dir.path(), RT)?.backend else {
            anyhow::bail!("expected rt");
        };
        assert_eq!(rt.url, "http://127.0.0.1:8080");
        assert_eq!(rt.password.expose(), "s3cret");
        assert_eq!(rt.queues.for_tier(Tier::L2), "Desktop Engineering");
        assert_eq!(rt.timeout, DEFAULT_TIMEOUT);
        assert!(!format!("{rt:?}").contains("s3cret"));
        Ok(())
    }

    #[test]
    fn password_file_is_relative_to_the_data_dir() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("rt-pw"), "from-file\n")?;
        let text = RT.replace("password = \"s3cret\"", "password_file = \"rt-pw\"");
        let Backend::Rt(rt) = parse_in(dir.path(), &text)?.backend else {
            anyhow::bail!("expected rt");
        };
        assert_eq!(rt.password.expose(), "from-file");
        Ok(())
    }

    #[test]
    fn errors_name_the_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cases = [
            (RT.replace("user = \"deskside\"\n", "user = \"deskside\"\ncolour = 1\n"), "colour"),
            (RT.replace("http://127.0.0.1:8080/", "ftp://x"), "ticketing.rt.url"),
            (RT.replace("password = \"s3cret\"", "password_file = \"nope\""), "ticketing.rt.password_file"),
            (RT.replace("password = \"s3cret\"\n", ""), "ticketing.rt.password"),
            (RT.replace("l2 = \"Desktop Engineering\"", "l2 = \" \""), "ticketing.rt.queues.l2"),
            (RT.replace("backend = \"rt\"", "backend = \"jira\""), "jira"),
            ("[ticketing]\nbackend = \"webhook\"\n".to_owned(), "ticketing.backend"),
            (
                "[ticketing]\nbackend = \"webhook\"\n[ticketing.webhook]\nurl = \"https://h\"\nsecret = \"k\"\ntimeout_secs = 0\n".to_owned(),
                "ticketing.webhook.timeout_secs",
            ),
        ];
        for (text, key) in cases {
            let err = match parse_in(dir.path(), &text) {
                Ok(c) => anyhow::bail!("accepted {text}: {c:?}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(key), "{err:?} should name {key}");
            assert!(
                err.contains(CONTROLLER_TOML),
                "{err:?} should name the file"
            );
        }
        Ok(())
    }

    #[test]
    fn plain_http_off_loopback_is_refused_unless_allowed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.8.0.1",
            "http://localhost/rt",
            "http://[::1]:80",
        ] {
            let cfg = parse_in(dir.path(), &RT.replace("http://127.0.0.1:8080/", loopback))?;
            assert!(cfg.warnings().is_empty(), "{loopback}: {cfg:?}");
        }
        let remote = RT.replace("http://127.0.0.1:8080/", "http://rt.example.org");
        let err = match parse_in(dir.path(), &remote) {
            Ok(c) => anyhow::bail!("accepted plain http to a remote host: {c:?}"),
            Err(e) => e.to_string(),
        };
        for part in [
            "ticketing.rt.url",
            "rt.example.org",
            "password",
            "unencrypted",
            "https://",
            "ticketing.rt.allow_insecure_http = true",
        ] {
            assert!(err.contains(part), "{err:?} should say {part:?}");
        }
        let hook = "[ticketing]\nbackend = \"webhook\"\n[ticketing.webhook]\nurl = \"http://10.0.0.5/h\"\nsecret = \"k\"\n";
        let err = parse_in(dir.path(), hook).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("ticketing.webhook.allow_insecure_http")),
            "{err:?}"
        );

        let allowed = remote.replace(
            "password = \"s3cret\"",
            "password = \"s3cret\"\nallow_insecure_http = true",
        );
        let cfg = parse_in(dir.path(), &allowed)?;
        let warnings = cfg.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings.iter().all(|w| w.contains("http://rt.example.org")),
            "{warnings:?}"
        );
        let https = RT.replace("http://127.0.0.1:8080/", "https://rt.example.org");
        assert!(parse_in(dir.path(), &https)?.warnings().is_empty());
        Ok(())
    }

    #[test]
    fn webhook_host_is_kept_for_the_reference() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let text = "[ticketing]\nbackend = \"webhook\"\n[ticketing.webhook]\nurl = \"https://hooks.example.org:8443/x\"\nsecret = \"k\"\n";
        let Backend::Webhook(w) = parse_in(dir.path(), text)?.backend else {
            anyhow::bail!("expected webhook");
        };
        assert_eq!(w.host, "hooks.example.org");
        assert_eq!(w.url, "https://hooks.example.org:8443/x");
        Ok(())
    }
}
