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

use validate::{ControllerFile, RawBackend, Validator};

mod validate;

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

#[cfg(test)]
mod tests;
