//! Text for findings: byte sizes, durations and counts with units, plurals, short lists
//! and quotes cut to length.

pub(super) const DAY_SECS: u64 = 86_400;
/// Names listed in one message before "and N more".
const MAX_LISTED: usize = 5;
/// Characters of a quoted log line or probe error.
const MAX_QUOTE_CHARS: usize = 100;

pub(super) fn count_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

pub(super) fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// "a, b, c, d, e and 2 more".
pub(super) fn list<T: AsRef<str>>(items: &[T]) -> String {
    let shown: Vec<&str> = items.iter().take(MAX_LISTED).map(AsRef::as_ref).collect();
    let more = items.len().saturating_sub(shown.len());
    let mut text = shown.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

/// At most [`MAX_QUOTE_CHARS`] characters of `text`, trimmed, with "…" when cut.
pub(super) fn quote(text: &str) -> String {
    let text = text.trim();
    let mut quoted: String = text.chars().take(MAX_QUOTE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// "900 B", "512.0 MiB", "1.2 GiB": binary units, one decimal from KiB up.
pub(super) fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let tenths_in = |divisor: u128| (u128::from(bytes) * 10 + divisor / 2) / divisor;
    let mut unit = 0;
    let mut divisor: u128 = 1024;
    let mut tenths = tenths_in(divisor);
    // Step up while rounding would print "1024.0" of the smaller unit.
    while tenths >= 10_240 && unit + 1 < UNITS.len() {
        unit += 1;
        divisor *= 1024;
        tenths = tenths_in(divisor);
    }
    let name = UNITS.get(unit).copied().unwrap_or("EiB");
    format!("{}.{} {name}", tenths / 10, tenths % 10)
}

/// "63 days", "5 hours", "4 minutes", "30 seconds": the largest whole unit, rounded down.
pub(super) fn fmt_duration(secs: u64) -> String {
    const UNITS: [(u64, &str, &str); 4] = [
        (DAY_SECS, "day", "days"),
        (3_600, "hour", "hours"),
        (60, "minute", "minutes"),
        (1, "second", "seconds"),
    ];
    let (size, one, many) = UNITS
        .into_iter()
        .find(|(size, _, _)| secs >= *size)
        .unwrap_or((1, "second", "seconds"));
    let n = secs / size;
    format!("{n} {}", plural(n, one, many))
}

/// "1,234,567".
pub(super) fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_bytes_examples() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(900), "900 B");
        assert_eq!(fmt_bytes(1024), "1.0 KiB");
        assert_eq!(fmt_bytes(512 * 1024 * 1024), "512.0 MiB");
        assert_eq!(fmt_bytes(1_288_490_189), "1.2 GiB");
        assert_eq!(fmt_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(fmt_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn fmt_duration_examples() {
        assert_eq!(fmt_duration(0), "0 seconds");
        assert_eq!(fmt_duration(1), "1 second");
        assert_eq!(fmt_duration(245), "4 minutes");
        assert_eq!(fmt_duration(5 * 3_600 + 59), "5 hours");
        assert_eq!(fmt_duration(DAY_SECS), "1 day");
        assert_eq!(fmt_duration(63 * DAY_SECS), "63 days");
    }

    #[test]
    fn fmt_count_examples() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1_000), "1,000");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
    }
}
