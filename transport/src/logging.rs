//! Logging for both binaries: tracing to stderr (journald picks it up), human-readable by
//! default or one JSON object per line with `--log-format json`. Colour only on a terminal.

use std::ffi::OsStr;
use std::io::IsTerminal;

pub use deskside_config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over `level` (an EnvFilter directive).
pub fn init(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

/// Whether log lines carry ANSI colour escapes: only when stderr is a terminal (a journal,
/// a pipe or a file would keep the escapes as text), and never when `NO_COLOR` is set to
/// anything but the empty string (no-color.org).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("human".parse(), Ok(LogFormat::Human));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(use_colour(true, None));
        assert!(use_colour(true, empty), "an empty NO_COLOR does not count");
        assert!(!use_colour(true, set));
        assert!(
            !use_colour(false, None),
            "a file, pipe or journal gets no escapes"
        );
        assert!(!use_colour(false, empty));
        assert!(!use_colour(false, set));
    }
}
