//! Wall-clock helpers: the store and the wire use Unix seconds.

use std::time::{Duration, UNIX_EPOCH};

pub use deskside_transport::clock::{now_ms, now_secs, secs};

/// `2026-11-26 10:00:00 UTC` for people.
pub fn format_secs(secs: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    let mut s = humantime::format_rfc3339_seconds(t).to_string();
    if let Some(pos) = s.find('T') {
        s.replace_range(pos..=pos, " ");
    }
    s.trim_end_matches('Z').to_owned() + " UTC"
}

/// "3 minutes ago", "never".
pub fn ago(secs: Option<u64>) -> String {
    match secs {
        None => "never".into(),
        Some(s) => {
            let d = now_secs().saturating_sub(s);
            match d {
                0..=59 => format!("{d}s ago"),
                60..=3599 => format!("{}m ago", d / 60),
                3600..=86_399 => format!("{}h ago", d / 3600),
                _ => format!("{}d ago", d / 86_400),
            }
        }
    }
}
