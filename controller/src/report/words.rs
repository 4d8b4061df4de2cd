//! How values read in a report: output excerpts, clipped lines, short hashes, times,
//! sizes and durations.

use crate::clock::format_secs;

/// Lines of script output kept at each end of an excerpt.
const EXCERPT_LINES: usize = 15;
/// Characters kept of one output line or timeline detail; a 1 MiB line stays out.
const MAX_LINE_CHARS: usize = 300;

/// First and last [`EXCERPT_LINES`] lines, long lines clipped, the elision marked.
pub(super) fn excerpt(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    let mut kept: Vec<String> = Vec::new();
    if lines.len() <= 2 * EXCERPT_LINES {
        kept.extend(lines.iter().map(|l| clip(l)));
    } else {
        kept.extend(lines.iter().take(EXCERPT_LINES).map(|l| clip(l)));
        kept.push(format!(
            "[… {} lines omitted …]",
            lines.len() - 2 * EXCERPT_LINES
        ));
        kept.extend(
            lines
                .iter()
                .skip(lines.len() - EXCERPT_LINES)
                .map(|l| clip(l)),
        );
    }
    kept.join("\n")
}

pub(super) fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_LINE_CHARS) {
        Some((at, _)) => format!(
            "{}[… {} more characters]",
            s.get(..at).unwrap_or_default(),
            s.chars().count() - MAX_LINE_CHARS
        ),
        None => s.to_owned(),
    }
}

/// First 12 hex digits of a hash.
pub(super) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

pub(super) fn ms_time(ms: u64) -> String {
    format_secs(ms / 1000)
}

/// `3.0 GiB`, `512.0 MiB`; small sizes in KiB or bytes so they do not read as zero.
pub(super) fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

pub(super) fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}
