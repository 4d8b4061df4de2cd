//! The reconnect timing's cross-key check: `0 < base <= cap <= MAX_RECONNECT_CAP`, and
//! when base and cap disagree, which of the two layers (default, file, environment) to
//! blame.

use std::time::Duration;

use deskside_config::{ConfigError, Origin};

use super::{AgentConfig, MAX_RECONNECT_CAP};

/// Where a reconnect value came from, to blame the right one when base and cap disagree.
#[derive(Debug, Clone)]
pub(super) struct Blame {
    /// 0 built-in default, 1 file, 2 environment: the later layer is the likelier mistake.
    pub(super) layer: u8,
    pub(super) origin: Origin,
    pub(super) key: String,
    pub(super) value: String,
}

impl Blame {
    pub(super) fn default_of(key: &str, d: Duration) -> Blame {
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

/// `0 < base <= cap <= MAX_RECONNECT_CAP`, checked by [`Backoff::new`] itself so the
/// service can never be handed parameters it would refuse. When base and cap disagree,
/// the one set in the later layer (environment over file over default) is blamed.
pub(super) fn check_reconnect(
    config: &AgentConfig,
    base: &Blame,
    cap: &Blame,
) -> Result<(), ConfigError> {
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
