//! What the agent's `agent.toml` and the controller's `controller.toml` share: reading a
//! bounded file, checking its values and environment overrides with errors that name
//! the file (or variable), key, value and reason, log settings, and durations.
//!
//! No IO beyond reading the one config file, no async: both binaries and any future
//! face (console, desktop helper) can use it without pulling in the network stack.

mod duration;
mod error;
mod keys;
mod log;

pub use duration::{DurationError, POSITIVE, parse_duration, parse_duration_in};
pub use error::{ConfigError, EXIT_CODE, Origin};
pub use keys::{FileKeys, env_invalid, parse_toml, read_config, render};
pub use log::{LogFormat, check_log_level, parse_log_format};
