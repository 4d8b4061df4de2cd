//! The diagnostics snapshot against the OS's own tools on this machine: every value the
//! snapshot documents as "as `tool` prints it" is checked by running that tool.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use deskside_agent::diag;
use deskside_proto::msg::diag::Snapshot;
use serde_json::Value;
use tokio::sync::OnceCell;

/// One snapshot shared by every test: the tools are compared against one reading, and its
/// time is that of a first snapshot, with no count of pending updates cached yet.
static SNAPSHOT: OnceCell<(Snapshot, Duration)> = OnceCell::const_new();

async fn snapshot() -> &'static Snapshot {
    &timed_snapshot().await.0
}

async fn timed_snapshot() -> &'static (Snapshot, Duration) {
    SNAPSHOT
        .get_or_init(|| async {
            let started = Instant::now();
            let snapshot = diag::snapshot().await;
            (snapshot, started.elapsed())
        })
        .await
}

/// Runs a tool and returns its stdout; fails with its stderr when it does not succeed.
fn tool(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    ensure!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A string field of a JSON object from `ip -j`.
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key)?.as_str()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

#[tokio::test]
async fn hostname_matches_hostname_command() -> Result<()> {
    let expected = first_line(&tool("hostname", &[])?);
    assert_eq!(snapshot().await.host.hostname, expected);
    Ok(())
}

#[tokio::test]
async fn kernel_matches_uname_r() -> Result<()> {
    let expected = first_line(&tool("uname", &["-r"])?);
    assert_eq!(snapshot().await.os.kernel, expected);
    Ok(())
}

#[tokio::test]
async fn arch_matches_uname_m() -> Result<()> {
    let expected = first_line(&tool("uname", &["-m"])?);
    assert_eq!(snapshot().await.os.arch, expected);
    Ok(())
}

#[tokio::test]
async fn os_matches_etc_os_release() -> Result<()> {
    let text = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
    };
    let os = &snapshot().await.os;
    assert_eq!(Some(os.id.clone()), field("ID"));
    assert_eq!(Some(os.version_id.clone()), field("VERSION_ID"));
    assert_eq!(Some(os.pretty_name.clone()), field("PRETTY_NAME"));
    Ok(())
}

#[tokio::test]
async fn logical_cores_match_nproc() -> Result<()> {
    // nproc honours OMP_NUM_THREADS/OMP_THREAD_LIMIT; the snapshot reports the affinity.
    let output = Command::new("nproc")
        .env_remove("OMP_NUM_THREADS")
        .env_remove("OMP_THREAD_LIMIT")
        .output()
        .context("running nproc")?;
    let expected: u32 = first_line(&String::from_utf8_lossy(&output.stdout)).parse()?;
    assert_eq!(snapshot().await.cpu.logical_cores, expected);
    Ok(())
}

#[tokio::test]
async fn memory_total_matches_meminfo_and_free() -> Result<()> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .context("MemTotal in /proc/meminfo")?
        .parse()?;
    let free = tool("free", &["-b"])?;
    let free_total: u64 = free
        .lines()
        .find_map(|l| l.strip_prefix("Mem:"))
        .and_then(|v| v.split_whitespace().next())
        .context("Mem: line in free -b")?
        .parse()?;
    let memory = &snapshot().await.memory;
    assert_eq!(memory.total_bytes, kib * 1024);
    assert_eq!(memory.total_bytes, free_total);
    Ok(())
}

/// Splits the last whitespace-separated word off `line`.
fn split_last_word(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_end();
    let at = line.rfind(char::is_whitespace)?;
    Some((line.get(..at)?.trim_end(), line.get(at..)?.trim()))
}

#[tokio::test]
async fn disks_match_df() -> Result<()> {
    let df = tool("df", &["-B1", "--output=target,fstype,size,avail"])?;
    // Mount points may contain spaces, so the three numeric/type columns are taken from
    // the right and whatever remains is the target.
    let mut expected: BTreeMap<String, (Option<String>, u64, u64)> = BTreeMap::new();
    for line in df.lines().skip(1) {
        let parsed = split_last_word(line).and_then(|(rest, avail)| {
            let (rest, size) = split_last_word(rest)?;
            let (target, fstype) = split_last_word(rest)?;
            Some((
                target.to_owned(),
                fstype.to_owned(),
                size.parse().ok()?,
                avail.parse().ok()?,
            ))
        });
        let Some((target, fstype, size, avail)) = parsed else {
            bail!("unparsable df line: {line:?}");
        };
        expected.insert(target, (Some(fstype), size, avail));
    }
    if !expected.contains_key("/") {
        // A chroot, or a container whose root is a bind that df's filters drop: the
        // snapshot still has /, sized as `stat -f /` sizes it.
        let stat = tool("stat", &["-f", "-c", "%S %b %a", "/"])?;
        let numbers: Vec<u64> = stat
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("unparsable stat -f output: {stat:?}"))?;
        let [unit, blocks, avail] = numbers[..] else {
            bail!("unparsable stat -f output: {stat:?}");
        };
        expected.insert("/".to_owned(), (None, unit * blocks, unit * avail));
    }
    let disks = &snapshot().await.disks;
    let ours: BTreeSet<&str> = disks.iter().map(|d| d.mount.as_str()).collect();
    let theirs: BTreeSet<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(ours, theirs, "mount points differ from df's");
    for (target, (fstype, size, avail)) in &expected {
        let disk = disks
            .iter()
            .find(|d| &d.mount == target)
            .with_context(|| format!("{target} missing"))?;
        if let Some(fstype) = fstype {
            assert_eq!(&disk.fs_type, fstype, "{target}");
        }
        assert_eq!(disk.total_bytes, *size, "{target}");
        // Free space is the one number that moves on its own: other builds and tests write
        // to the root filesystem between our statvfs and df's. 1% of the filesystem (at
        // least 64 MiB) absorbs that, and still catches f_bfree-vs-f_bavail or
        // block-size mistakes, which are off by the reserved blocks or a factor.
        let tolerance = (size / 100).max(64 << 20);
        assert!(
            disk.available_bytes.abs_diff(*avail) <= tolerance,
            "{target}: avail {} vs df {avail}",
            disk.available_bytes
        );
        assert!(disk.used_bytes <= disk.total_bytes, "{target}");
    }
    Ok(())
}

#[tokio::test]
async fn interfaces_match_ip_addr() -> Result<()> {
    let links: Value = serde_json::from_str(&tool("ip", &["-j", "addr"])?)?;
    let links = links.as_array().context("ip -j addr is not a JSON array")?;
    let interfaces = &snapshot().await.network.interfaces;
    let ours: BTreeSet<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    let theirs: BTreeSet<&str> = links.iter().filter_map(|l| text(l, "ifname")).collect();
    assert_eq!(ours, theirs, "interface names differ from ip's");
    for link in links {
        let name = text(link, "ifname").context("ifname")?;
        let interface = interfaces
            .iter()
            .find(|i| i.name == name)
            .with_context(|| format!("{name} missing"))?;
        assert_eq!(
            interface.mac,
            text(link, "address").unwrap_or(""),
            "{name} mac"
        );
        let expected: BTreeSet<String> = link
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    text(a, "local")?,
                    a.get("prefixlen")?.as_u64()?
                ))
            })
            .collect();
        let got: BTreeSet<String> = interface.addresses.iter().cloned().collect();
        assert_eq!(got, expected, "{name} addresses");
        let flags: Vec<&str> = link
            .get("flags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(interface.up, flags.contains(&"UP"), "{name} IFF_UP");
        assert_eq!(
            Some(u64::from(interface.mtu)),
            link.get("mtu").and_then(Value::as_u64),
            "{name} mtu"
        );
    }
    Ok(())
}

#[tokio::test]
async fn default_routes_match_ip_route() -> Result<()> {
    let mut expected = BTreeSet::new();
    for (family, args) in [
        ("ipv4", ["-j", "-4", "route", "show", "default"]),
        ("ipv6", ["-j", "-6", "route", "show", "default"]),
    ] {
        let routes: Value = serde_json::from_str(&tool("ip", &args)?)?;
        for route in routes.as_array().into_iter().flatten() {
            if route.get("type").is_some_and(|t| t != "unicast") {
                continue; // unreachable/blackhole/prohibit defaults are not routes out
            }
            let dev = text(route, "dev").unwrap_or_default().to_owned();
            let gateway = text(route, "gateway").unwrap_or_default().to_owned();
            expected.insert((family.to_owned(), dev, gateway));
        }
    }
    let got: BTreeSet<(String, String, String)> = snapshot()
        .await
        .network
        .default_routes
        .iter()
        .map(|r| (r.family.clone(), r.interface.clone(), r.gateway.clone()))
        .collect();
    assert_eq!(got, expected);
    Ok(())
}

#[tokio::test]
async fn every_probe_reports_once() {
    let snapshot = snapshot().await;
    let names: Vec<&str> = snapshot.probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, diag::probe::ALL, "one report per probe, in order");
    for report in &snapshot.probes {
        match (&report.error, report.ok) {
            (None, true) => {}
            (Some(error), false) => assert!(!error.trim().is_empty(), "{}", report.name),
            _ => panic!(
                "{}: ok={} but error={:?}",
                report.name, report.ok, report.error
            ),
        }
        // No probe may outlive its limit by much (the longest limit is 5 s).
        assert!(
            report.elapsed_ms < 6_000,
            "{} took {} ms",
            report.name,
            report.elapsed_ms
        );
    }
    // The /proc and sysinfo probes work on any Linux machine, this one included.
    for name in [
        diag::probe::HOST,
        diag::probe::OS,
        diag::probe::CPU,
        diag::probe::MEMORY,
        diag::probe::DISKS,
        diag::probe::INTERFACES,
        diag::probe::ROUTES,
        diag::probe::DNS,
        diag::probe::PROCESSES,
        diag::probe::TEMPERATURES,
        diag::probe::USERS,
        diag::probe::REBOOT,
        diag::probe::TIME,
    ] {
        let report = snapshot.probes.iter().find(|p| p.name == name);
        assert!(report.is_some_and(|r| r.ok), "{name}: {report:?}");
    }
}

#[tokio::test]
async fn systemd_probes_say_why_without_systemd() {
    let snapshot = snapshot().await;
    let systemd_running = std::path::Path::new("/run/systemd/system").is_dir();
    for name in [diag::probe::FAILED_UNITS, diag::probe::JOURNAL] {
        let report = snapshot.probes.iter().find(|p| p.name == name);
        if systemd_running {
            assert!(report.is_some_and(|r| r.ok), "{name}: {report:?}");
        } else {
            // This machine: PID 1 is not systemd. A clear error, not a failed snapshot.
            let error = report.and_then(|r| r.error.clone()).unwrap_or_default();
            assert!(
                error.starts_with("systemd is not running (PID 1 is "),
                "{name}: {error}"
            );
        }
    }
    if !systemd_running {
        assert!(snapshot.failed_units.is_empty());
        assert!(snapshot.log_errors.iter().all(|l| l.source != "journal"));
    }
}

#[tokio::test]
async fn reboot_need_is_the_distributions_own_signal_or_unknown_with_a_reason() -> Result<()> {
    let snapshot = snapshot().await;
    let report = snapshot
        .probes
        .iter()
        .find(|p| p.name == diag::probe::REBOOT)
        .context("no reboot probe report")?;
    let release = std::fs::read_to_string("/etc/os-release")?;
    let debian = release.lines().any(|l| {
        l == "ID=debian" || l == "ID=ubuntu" || (l.starts_with("ID_LIKE=") && l.contains("debian"))
    });
    let flag = std::path::Path::new("/var/run/reboot-required").exists();
    match snapshot.updates.reboot_required {
        Some(required) => {
            assert!(report.ok, "{report:?}");
            if debian {
                // Debian and Ubuntu: the flag file, or a newer kernel than the running one.
                assert!(
                    !flag || required,
                    "the flag exists but no reboot is reported"
                );
            }
        }
        None => {
            assert!(!debian, "Debian's flag file is always readable: {report:?}");
            let error = report.error.clone().unwrap_or_default();
            assert!(
                error.starts_with("cannot tell whether a restart is needed: "),
                "{error}"
            );
        }
    }
    // The JSON contract: a boolean, or null where unknown — never a silent false.
    let json = serde_json::to_value(snapshot)?;
    let field = json
        .pointer("/updates/reboot_required")
        .context("no .updates.reboot_required in the JSON")?;
    assert_eq!(field.as_bool(), snapshot.updates.reboot_required, "{field}");
    Ok(())
}

#[tokio::test]
async fn snapshot_is_complete_and_bounded_in_time() {
    let (snapshot, elapsed) = timed_snapshot().await;
    assert_eq!(
        snapshot.version,
        deskside_proto::msg::diag::SNAPSHOT_VERSION
    );
    assert!(snapshot.collected_at_ms > 0);
    assert!(
        snapshot.findings.is_empty(),
        "findings are the caller's job"
    );
    assert!(snapshot.network.controller.is_none());
    assert!(snapshot.processes.total > 0 && !snapshot.processes.top_memory.is_empty());
    assert!(snapshot.processes.top_cpu.len() <= 10 && snapshot.processes.top_memory.len() <= 10);
    // Probes run concurrently: the whole snapshot costs about its slowest probe (5 s max:
    // the journal, or CPU sampling then the updates probe's file checks), not their sum.
    assert!(
        *elapsed < Duration::from_secs(6),
        "collect() took {elapsed:?}"
    );
    // Pending updates come from the background count's cache: the probe only checks a few
    // files and never waits for apt-get (4-6 s on this machine).
    let updates = snapshot
        .probes
        .iter()
        .find(|p| p.name == diag::probe::UPDATES);
    assert!(updates.is_some_and(|r| r.elapsed_ms < 2_000), "{updates:?}");
    eprintln!("collect() took {elapsed:?}");
}

/// The error of the `updates` probe, `None` when it is ok.
fn updates_error(snapshot: &Snapshot) -> Result<Option<String>> {
    let report = snapshot
        .probes
        .iter()
        .find(|p| p.name == diag::probe::UPDATES)
        .context("no updates report")?;
    Ok(report.error.clone())
}

#[tokio::test]
async fn pending_updates_match_apt_get_once_counted() -> Result<()> {
    // The shared snapshot first, so that its time is that of a cold cache.
    let first = snapshot().await;
    if Command::new("apt-get").arg("--version").output().is_err() {
        assert_eq!(
            updates_error(first)?.as_deref(),
            Some("apt-get is not installed (not found in PATH)")
        );
        return Ok(());
    }
    // What the agent service does at start; snapshots then find the count cached.
    diag::warm_up();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let Some(error) = updates_error(&diag::snapshot().await)? else {
            break;
        };
        ensure!(
            error.starts_with("pending updates are being counted in the background"),
            "{error}"
        );
        ensure!(Instant::now() < deadline, "still not counted: {error}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let started = Instant::now();
    let warm = diag::snapshot().await;
    let elapsed = started.elapsed();
    eprintln!("collect() with pending updates cached took {elapsed:?}");
    assert_eq!(updates_error(&warm)?, None);

    let apt = tool("apt-get", &["-s", "-o", "Debug::NoLocking=1", "upgrade"])?;
    let installs: Vec<&str> = apt.lines().filter(|l| l.starts_with("Inst ")).collect();
    let security = installs
        .iter()
        .filter(|l| {
            l.split_once('(')
                .is_some_and(|(_, origin)| origin.to_ascii_lowercase().contains("security"))
        })
        .count();
    assert_eq!(warm.updates.pending, Some(u32::try_from(installs.len())?));
    assert_eq!(
        warm.updates.pending_security,
        Some(u32::try_from(security)?)
    );
    Ok(())
}
