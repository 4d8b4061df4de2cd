//! Log settings both binaries take from their config, environment and flags.

use std::str::FromStr;

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?} is not human or json")),
        }
    }
}

/// Parses `log.format` / `DESKSIDE_LOG_FORMAT`.
pub fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err("not a log format (human or json)".to_owned()),
    }
}

/// Checks a `tracing` filter directive (`info`, `warn,deskside_agent=debug`, …).
///
/// Stricter than `EnvFilter` on one point: a bare word must be a level. `EnvFilter` reads
/// `verbose` as "everything from a target named verbose", which silently logs nothing.
pub fn check_log_level(directive: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if directive.trim().is_empty() {
        return Err(format!(
            "empty filter; use a level ({}) or TARGET=LEVEL pairs",
            LEVELS.join(", ")
        ));
    }
    for part in directive
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let bare = !part.contains('=') && !part.contains('[');
        if bare && !LEVELS.contains(&part.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{part:?} is not a level ({}); to filter a target write TARGET=LEVEL, e.g. deskside_agent=debug",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(directive)
        .map(drop)
        .map_err(|e| format!("not a tracing filter: {e} (e.g. info or warn,deskside_agent=debug)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,deskside_agent=debug",
            "quinn=trace",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["", "verbose", "info,,loud", "x=loud"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("human".parse(), Ok(LogFormat::Human));
        assert!("xml".parse::<LogFormat>().is_err());
        assert_eq!(parse_log_format("json"), Ok(LogFormat::Json));
        assert_eq!(
            parse_log_format("xml"),
            Err("not a log format (human or json)".to_owned())
        );
    }
}
