//! The error every configuration check returns, and where a bad value came from.

use std::fmt;
use std::path::PathBuf;

/// Exit status for a bad configuration (sysexits' EX_USAGE, as linkerd2-proxy).
pub const EXIT_CODE: u8 = 64;

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
