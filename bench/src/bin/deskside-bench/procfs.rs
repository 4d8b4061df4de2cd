//! What a process costs, read from /proc the way `ps` and `top` do: resident memory,
//! CPU time and how often its threads woke up.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// VmRSS of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = read(&format!("/proc/{pid}/status"))?;
    kib_field(&status, "VmRSS:").with_context(|| format!("no VmRSS for process {pid}"))
}

/// A `Key:   N kB` line's value in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line
        .get(key.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// utime + stime of `pid` (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = read(&format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .context("malformed /proc/PID/stat")?;
    // After ')': state(3) ppid(4) … utime(14) stime(15) → indexes 11 and 12 here.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc/PID/stat")?
            .parse()
            .context("bad number in /proc/PID/stat")
    };
    Ok(field(11)? + field(12)?)
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 on every Linux this runs on.
pub fn ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Voluntary + involuntary context switches summed over every thread of `pid`: each is
/// one time a thread went to sleep or was preempted, i.e. roughly one wake-up.
pub fn context_switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    let dir = format!("/proc/{pid}/task");
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task?.path().join("status");
        let Ok(status) = read_path(&path) else {
            continue; // the thread exited between listing and reading
        };
        for key in ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"] {
            total += status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.get(key.len()..))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Child processes of `pid` (all its threads' children).
pub fn children(pid: u32) -> Result<usize> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("children");
        if let Ok(list) = read_path(&path) {
            total += list.split_whitespace().count();
        }
    }
    Ok(total)
}

/// Number of threads of `pid`.
pub fn threads(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/task"))?.count())
}

/// The lines of /proc/PID/smaps_rollup that say where resident memory is.
pub fn smaps_rollup(pid: u32) -> Result<String> {
    let text = read(&format!("/proc/{pid}/smaps_rollup"))?;
    Ok(text
        .lines()
        .filter(|l| {
            [
                "Rss:",
                "Pss_Anon:",
                "Pss_File:",
                "Anonymous:",
                "Private_Dirty:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", "))
}

fn read(path: &str) -> Result<String> {
    read_path(Path::new(path))
}

fn read_path(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).expect("rss") > 0);
        cpu_ticks(me).expect("cpu");
        assert!(context_switches(me).expect("switches") > 0);
        assert!(threads(me).expect("threads") >= 1);
        children(me).expect("children");
    }

    #[test]
    fn kib_lines() {
        let text = "Name:\tx\nVmRSS:\t    5120 kB\n";
        assert_eq!(kib_field(text, "VmRSS:"), Some(5120 * 1024));
        assert_eq!(kib_field(text, "VmHWM:"), None);
    }
}
