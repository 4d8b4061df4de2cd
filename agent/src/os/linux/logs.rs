//! Failed units, the journal's and the kernel's recent errors: `systemctl --failed`,
//! `journalctl -p err`, `dmesg --level=err`.

use deskside_proto::msg::diag::{FailedUnit, LogLine};

use super::command::{Keep, run};
use super::files::read_line;
use crate::os::{Error, blocking, clip};

/// Log lines kept from each source (the newest).
const LOG_LINES: usize = 20;
/// Failed units reported (a broken machine has a handful; thousands means a template storm).
const MAX_FAILED_UNITS: usize = 256;
/// stdout kept from a command: the beginning (`Head`) or the end (`Tail`).
const LOG_OUTPUT_BYTES: usize = 256 * 1024;
const UNITS_OUTPUT_BYTES: usize = 1024 * 1024;

/// Failed units and the journal are systemd's; without systemd as init (containers,
/// WSL1, other inits) there is nothing to ask. `sd_booted(3)` checks /run/systemd/system.
async fn require_systemd() -> Result<(), Error> {
    blocking(|| {
        if std::path::Path::new("/run/systemd/system").is_dir() {
            return Ok(());
        }
        let init = read_line("/proc/1/comm").unwrap_or_else(|_| "unknown".to_owned());
        Err(Error::Unavailable(format!(
            "systemd is not running (PID 1 is {init})"
        )))
    })
    .await
}

/// `systemctl --failed`.
pub async fn failed_units() -> Result<Vec<FailedUnit>, Error> {
    require_systemd().await?;
    let args = ["--failed", "--no-legend", "--plain", "--no-pager"];
    let output = run("systemctl", &args, UNITS_OUTPUT_BYTES, Keep::Head).await?;
    Ok(parse_failed_units(&output.stdout))
}

/// `systemctl --failed --no-legend --plain`: `UNIT LOAD ACTIVE SUB DESCRIPTION...`.
fn parse_failed_units(text: &str) -> Vec<FailedUnit> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let description: Vec<&str> = words.skip(3).collect();
            Some(FailedUnit {
                name: clip(name),
                description: clip(&description.join(" ")),
            })
        })
        .take(MAX_FAILED_UNITS)
        .collect()
}

/// The newest error-or-worse journal messages of the last 24 hours.
pub async fn journal_errors() -> Result<Vec<LogLine>, Error> {
    require_systemd().await?;
    let args = [
        "-p",
        "err",
        "-n",
        "20",
        "--no-pager",
        "-o",
        "cat",
        "--since=-24h",
        "--quiet",
    ];
    let output = run("journalctl", &args, LOG_OUTPUT_BYTES, Keep::Tail).await?;
    Ok(last_lines(&output.stdout, LOG_LINES, "journal"))
}

/// The newest emerg..err kernel messages (`dmesg` needs root where dmesg_restrict=1).
pub async fn kernel_errors() -> Result<Vec<LogLine>, Error> {
    let args = ["--level=emerg,alert,crit,err"];
    let output = run("dmesg", &args, LOG_OUTPUT_BYTES, Keep::Tail).await?;
    Ok(last_lines(&output.stdout, LOG_LINES, "kernel"))
}

/// The last `n` non-empty lines of `text`, oldest first.
fn last_lines(text: &str, n: usize, source: &str) -> Vec<LogLine> {
    let mut lines: Vec<LogLine> = text
        .lines()
        .rev()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| LogLine {
            source: source.to_owned(),
            text: clip(l),
        })
        .collect();
    lines.reverse();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_units_plain_output() {
        let text = "nginx.service loaded failed failed A high performance web server\n\
                    backup@home.timer loaded failed failed\n\n";
        let units = parse_failed_units(text);
        assert_eq!(units.len(), 2);
        assert_eq!(
            units.first().map(|u| u.name.as_str()),
            Some("nginx.service")
        );
        assert_eq!(
            units.first().map(|u| u.description.as_str()),
            Some("A high performance web server")
        );
        assert_eq!(units.get(1).map(|u| u.description.as_str()), Some(""));
    }

    #[test]
    fn last_lines_keeps_the_newest_in_order() {
        let text: String = (1..=30).map(|i| format!("[{i}] error {i}\n")).collect();
        let lines = last_lines(&text, LOG_LINES, "kernel");
        assert_eq!(lines.len(), LOG_LINES);
        assert_eq!(
            lines.first().map(|l| l.text.as_str()),
            Some("[11] error 11")
        );
        assert_eq!(lines.last().map(|l| l.text.as_str()), Some("[30] error 30"));
        assert!(lines.iter().all(|l| l.source == "kernel"));
    }
}
