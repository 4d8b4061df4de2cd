//! How a `deskside` command ends when it does not succeed, and the one function that says
//! which exit status each ending is ([`CliError::exit_code`]; README, "Exit codes").

use deskside_proto::msg::tech::ErrorCode;

use crate::client::{ClientError, Refused};

/// Exit statuses scripts can rely on (also listed in the README).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    /// clap's own code for bad arguments.
    pub const USAGE: u8 = 2;
    /// The agent (its policy or its user) refused the request.
    pub const REFUSED: u8 = 3;
    /// The agent or controller did not answer in time.
    pub const TIMED_OUT: u8 = 4;
    /// The agent is not connected.
    pub const OFFLINE: u8 = 5;
    /// No session covers the request.
    pub const NO_SESSION: u8 = 6;
    /// The session that covered the request has expired.
    pub const SESSION_EXPIRED: u8 = 7;
    /// `ticket verify`: the bundle fails a hash, signature or chain check.
    pub const VERIFY_FAILED: u8 = 8;
    /// A configuration or data file is invalid (sysexits EX_DATAERR-style, as linkerd2-proxy).
    pub const BAD_CONFIG: u8 = 64;
}

/// Why a `deskside` command did not succeed. Each variant's message is what the user
/// reads after `error: `; [`CliError::exit_code`] is what a script reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The controller config file or an environment override is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The process could not start its async runtime.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The controller answered the request with an error: its code says which.
    #[error("{0}")]
    Controller(Refused),
    /// The user of the machine refused the session.
    #[error("session refused: {reason}")]
    SessionRefused { reason: String },
    /// Nobody at the machine answered the session prompt in time.
    #[error("no answer from the user within {waited_secs}s")]
    SessionUnanswered { waited_secs: u64 },
    /// A script ran and did not exit 0; the summary says how it ended and where its
    /// record is stored.
    #[error("{summary}")]
    Script { end: ScriptEnd, summary: String },
    /// `diag --all`: some selected agents stored no snapshot.
    #[error("{summary}")]
    DiagAll { worst: Shortfall, summary: String },
    /// `ticket verify`: the bundle fails a hash, signature or chain check.
    #[error("bundle does NOT verify: {0}")]
    NotVerified(crate::bundle::BundleError),
    /// A state file (the technician profile) is not valid TOML.
    #[error("{0:#}")]
    BadState(anyhow::Error),
    /// Anything else; the message is the whole chain of what was being done.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// How a script that did not exit 0 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptEnd {
    /// It ran past its timeout and was killed.
    TimedOut,
    /// The session it ran under ended, and the agent stopped it.
    Cancelled,
    /// It exited non-zero or was killed by a signal.
    Failed,
}

/// The worst outcome among the agents of a `diag --all` that stored no snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// At least one pull failed.
    Failed,
    /// None failed, at least one was refused.
    Refused,
    /// Only agents that are not connected are missing.
    Offline,
}

impl CliError {
    /// The exit status for this ending: the one place that decides it.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::BadState(_) => exit::BAD_CONFIG,
            CliError::Runtime(_) | CliError::Failed(_) => exit::FAILURE,
            CliError::Controller(r) => match r.0.code {
                ErrorCode::NoSession => exit::NO_SESSION,
                ErrorCode::SessionExpired => exit::SESSION_EXPIRED,
                ErrorCode::AgentDisabled | ErrorCode::AgentRefused => exit::REFUSED,
                ErrorCode::Timeout => exit::TIMED_OUT,
                ErrorCode::AgentOffline => exit::OFFLINE,
                _ => exit::FAILURE,
            },
            CliError::SessionRefused { .. } => exit::REFUSED,
            CliError::SessionUnanswered { .. } => exit::TIMED_OUT,
            CliError::Script { end, .. } => match end {
                ScriptEnd::TimedOut => exit::TIMED_OUT,
                ScriptEnd::Cancelled => exit::REFUSED,
                ScriptEnd::Failed => exit::FAILURE,
            },
            CliError::DiagAll { worst, .. } => match worst {
                Shortfall::Failed => exit::FAILURE,
                Shortfall::Refused => exit::REFUSED,
                Shortfall::Offline => exit::OFFLINE,
            },
            CliError::NotVerified(_) => exit::VERIFY_FAILED,
        }
    }
}

impl From<anyhow::Error> for CliError {
    /// Commands add context with anyhow on their way here. An error reply from the
    /// controller (a [`ClientError::Refused`], or a bare [`Refused`]) and an unreadable
    /// profile (a TOML error in the chain) become the variants that carry their own exit
    /// status.
    fn from(e: anyhow::Error) -> CliError {
        if let Some(reply) = e
            .downcast_ref::<ClientError>()
            .and_then(ClientError::refused)
        {
            return CliError::Controller(Refused(reply.clone()));
        }
        match e.downcast::<Refused>() {
            Ok(refused) => CliError::Controller(refused),
            Err(e) if e.chain().any(|c| c.is::<toml::de::Error>()) => CliError::BadState(e),
            Err(e) => CliError::Failed(e),
        }
    }
}

impl From<ClientError> for CliError {
    /// The technician client's typed error: an error reply keeps its code for the exit
    /// status, a profile problem is the profile's.
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::Refused(r) => CliError::Controller(r),
            ClientError::Profile(p) => CliError::from(p),
            other => CliError::from(anyhow::Error::from(other)),
        }
    }
}

impl From<crate::profile::ProfileError> for CliError {
    /// The profile's typed error enters the CLI like the client's: an invalid profile (a
    /// TOML error underneath) is [`CliError::BadState`].
    fn from(e: crate::profile::ProfileError) -> CliError {
        CliError::from(anyhow::Error::from(e))
    }
}

#[cfg(test)]
mod tests {
    use deskside_proto::msg::tech::ErrorReply;

    use super::*;

    fn refused(code: ErrorCode) -> CliError {
        anyhow::Error::from(Refused(ErrorReply {
            code,
            message: "no".into(),
        }))
        .into()
    }

    #[test]
    fn a_controller_error_reply_exits_with_its_code() {
        assert_eq!(refused(ErrorCode::NoSession).exit_code(), exit::NO_SESSION);
        assert_eq!(
            refused(ErrorCode::SessionExpired).exit_code(),
            exit::SESSION_EXPIRED
        );
        assert_eq!(refused(ErrorCode::AgentRefused).exit_code(), exit::REFUSED);
        assert_eq!(refused(ErrorCode::AgentDisabled).exit_code(), exit::REFUSED);
        assert_eq!(refused(ErrorCode::Timeout).exit_code(), exit::TIMED_OUT);
        assert_eq!(refused(ErrorCode::AgentOffline).exit_code(), exit::OFFLINE);
        assert_eq!(refused(ErrorCode::NotFound).exit_code(), exit::FAILURE);
    }

    #[test]
    fn an_unreadable_profile_is_bad_state_and_anything_else_a_failure() {
        let e = match toml::from_str::<toml::Table>("name = ") {
            Ok(_) => anyhow::anyhow!("toml accepted a key without a value"),
            Err(e) => anyhow::Error::from(e),
        }
        .context("/home/t/.config/deskside/profile.toml is not a valid profile");
        let e = CliError::from(e);
        assert_eq!(e.exit_code(), exit::BAD_CONFIG);
        assert!(e.to_string().starts_with("/home/t/.config"), "{e}");
        let e = CliError::from(anyhow::anyhow!("disk full").context("writing the bundle"));
        assert_eq!(e.exit_code(), exit::FAILURE);
        assert_eq!(e.to_string(), "writing the bundle: disk full");
    }
}
