//! Diagnostics snapshots: sysinfo plus the OS's own facts (`crate::os`), probed
//! concurrently off the reactor, each probe under its own time limit. A probe that fails or times out leaves an error entry.
//! Pending updates are the exception: counting them takes seconds, so they are counted in
//! the background and snapshots report the last count (see the `updates` module).

mod probes;
mod updates;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deskside_proto::msg::diag::{Network, ProbeReport, SNAPSHOT_VERSION, Snapshot, Updates};
use tokio::time::Instant;

use crate::os::{self, Error, blocking};

/// Probe names as they appear in [`ProbeReport::name`], in report order: defined in
/// `proto` so the findings rules key on the same names.
pub use deskside_proto::msg::diag::probe_names as probe;

/// /proc, /sys and /etc reads come from memory and take microseconds; 2 s only trips when
/// the machine is thrashing, and then the rest of the snapshot is still worth having.
const FILE_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// CPU and per-process usage need two samples 200 ms apart (sysinfo's minimum) plus two
/// walks of /proc; 3 s covers a workstation with thousands of processes.
const SAMPLING_TIMEOUT: Duration = Duration::from_secs(3);
/// statvfs on a network mount blocks while its server is unreachable. We stop waiting
/// after 3 s; the blocking thread itself stays stuck until the kernel gives up.
const DISKS_TIMEOUT: Duration = Duration::from_secs(3);
/// hwmon/ACPI sensor reads are slow on some laptops (tens of ms per sensor).
const SENSORS_TIMEOUT: Duration = Duration::from_secs(3);
/// `systemctl --failed` is one D-Bus round trip to PID 1.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(3);
/// `journalctl --since -24h` may have to read through a large journal.
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// `dmesg` copies the kernel ring buffer (at most a few MiB).
const KERNEL_LOG_TIMEOUT: Duration = Duration::from_secs(2);
/// Debian and Arch only read files; `needs-restarting -r` (Fedora, RHEL) opens the rpm
/// database and `zypper needs-rebooting` its own, a second or two on a slow disk. Past
/// this the answer is "unknown (timed out)", never "no".
const REBOOT_TIMEOUT: Duration = Duration::from_secs(5);
// The `updates` probe only stats a few files (FILE_READ_TIMEOUT); `apt-get -s upgrade`
// itself runs in the background under `updates::UPDATES_COUNT_TIMEOUT`.

/// Takes a snapshot of this machine. Never fails: a probe that fails or times out leaves
/// an error entry in `probes` and its section at the default.
pub async fn snapshot() -> Snapshot {
    let collected_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);

    // CPU and process usage are sampled before this snapshot may start a background count
    // of pending updates: apt-get resolving dependencies keeps a core busy for seconds, and
    // the snapshot must describe the machine, not the agent's own probing. The updates
    // probe itself never waits for apt-get, so this costs the snapshot nothing.
    let sampled_then_updates = async {
        let sampled = tokio::join!(
            run(probe::CPU, SAMPLING_TIMEOUT, blocking(probes::cpu)),
            run(
                probe::PROCESSES,
                SAMPLING_TIMEOUT,
                blocking(probes::processes)
            ),
        );
        (sampled, pending_updates().await)
    };
    let (
        ((cpu, processes), updates),
        host,
        os,
        memory,
        disks,
        interfaces,
        routes,
        dns,
        temperatures,
        users,
        failed_units,
        journal,
        kernel_log,
        reboot,
        time,
    ) = tokio::join!(
        sampled_then_updates,
        run(probe::HOST, FILE_READ_TIMEOUT, blocking(probes::host)),
        run(probe::OS, FILE_READ_TIMEOUT, blocking(probes::os)),
        run(probe::MEMORY, FILE_READ_TIMEOUT, blocking(probes::memory)),
        run(probe::DISKS, DISKS_TIMEOUT, blocking(os::disks)),
        run(
            probe::INTERFACES,
            FILE_READ_TIMEOUT,
            blocking(os::interfaces)
        ),
        run(
            probe::ROUTES,
            FILE_READ_TIMEOUT,
            blocking(os::default_routes)
        ),
        run(probe::DNS, FILE_READ_TIMEOUT, blocking(os::resolver)),
        run(
            probe::TEMPERATURES,
            SENSORS_TIMEOUT,
            blocking(probes::temperatures)
        ),
        run(
            probe::USERS,
            FILE_READ_TIMEOUT,
            blocking(os::logged_in_users)
        ),
        run(probe::FAILED_UNITS, SYSTEMCTL_TIMEOUT, os::failed_units()),
        run(probe::JOURNAL, JOURNAL_TIMEOUT, os::journal_errors()),
        run(probe::KERNEL_LOG, KERNEL_LOG_TIMEOUT, os::kernel_errors()),
        run(probe::REBOOT, REBOOT_TIMEOUT, os::reboot_required()),
        run(probe::TIME, FILE_READ_TIMEOUT, blocking(probes::time_sync)),
    );

    let mut reports = Vec::with_capacity(probe::ALL.len());
    let r = &mut reports;
    let host_users = keep(r, users);
    let mut snapshot = Snapshot {
        version: SNAPSHOT_VERSION,
        collected_at_ms,
        host: keep(r, host).unwrap_or_default(),
        os: keep(r, os).unwrap_or_default(),
        cpu: keep(r, cpu).unwrap_or_default(),
        memory: keep(r, memory).unwrap_or_default(),
        disks: keep(r, disks).unwrap_or_default(),
        ..Snapshot::default()
    };
    let resolver = keep(r, dns).unwrap_or_default();
    snapshot.network = Network {
        interfaces: keep(r, interfaces).unwrap_or_default(),
        default_routes: keep(r, routes).unwrap_or_default(),
        dns_resolvers: resolver.nameservers,
        search_domains: resolver.search,
        controller: None,
    };
    snapshot.processes = keep(r, processes).unwrap_or_default();
    snapshot.temperatures = keep(r, temperatures).unwrap_or_default();
    snapshot.host.users = host_users.unwrap_or_default();
    snapshot.failed_units = keep(r, failed_units).unwrap_or_default();
    snapshot.log_errors = keep(r, journal).unwrap_or_default();
    snapshot
        .log_errors
        .extend(keep(r, kernel_log).unwrap_or_default());
    let reboot = keep(r, reboot);
    let pending = keep(r, updates);
    snapshot.updates = Updates {
        reboot_required: reboot.as_ref().map(|r| r.required),
        reboot_packages: reboot.map(|r| r.packages).unwrap_or_default(),
        pending: pending.map(|p| p.pending),
        pending_security: pending.map(|p| p.security),
    };
    snapshot.time = keep(r, time).unwrap_or_default();
    // Reports in `probe::ALL` order, whatever order the sections were assembled in.
    reports.sort_by_key(|report| {
        probe::ALL
            .iter()
            .position(|name| *name == report.name)
            .unwrap_or(usize::MAX)
    });
    snapshot.probes = reports;
    // Every probe's temporaries are gone now; give their memory back to the kernel.
    os::release_free_memory();
    snapshot
}

/// Former name of [`snapshot`], kept for callers not yet renamed.
pub use self::snapshot as collect;

/// The `updates` probe: the cached count of pending updates, at once. When the cache has
/// no current count, the report is not ok and says why (a count is running in the
/// background, or failed), and the value is the previous count if there is one.
async fn pending_updates() -> (ProbeReport, Option<os::PendingUpdates>) {
    let (mut report, lookup) = run(probe::UPDATES, FILE_READ_TIMEOUT, async {
        let inputs = blocking(os::PackageState::read).await?;
        Ok(updates::UPDATES.lookup(&inputs, updates::UPDATES_MAX_AGE, os::pending_updates))
    })
    .await;
    let Some(lookup) = lookup else {
        return (report, None);
    };
    if let Some(problem) = lookup.problem {
        tracing::debug!(probe = probe::UPDATES, error = %problem, "pending updates not current");
        report.ok = false;
        report.error = Some(problem);
    }
    (report, lookup.updates)
}

/// Starts keeping the count of pending updates current in the background, so that
/// snapshots have it at once: counts now (unless a current count is cached), then
/// recounts when packages or package lists change and before a count gets old. The agent
/// service calls this at start; calling it again while the first call's task runs does
/// nothing. Never runs apt where apt-get is not installed. Needs a tokio runtime (without
/// one it logs a warning and does nothing); the task ends with the runtime.
pub fn warm_up() {
    static KEEPER: AtomicBool = AtomicBool::new(false);
    /// Lets a later call start a new keeper once this one's runtime is gone.
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            KEEPER.store(false, Ordering::Release);
        }
    }

    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("diagnostics warm-up needs a tokio runtime; pending updates not counted");
        return;
    };
    if KEEPER.swap(true, Ordering::AcqRel) {
        return;
    }
    // Moved into the task rather than created by it, so that a task dropped before it
    // first runs resets the flag too.
    let running = Running;
    runtime.spawn(async move {
        let _running = running;
        updates::UPDATES
            .keep_warm(|| blocking(os::PackageState::read), os::pending_updates)
            .await;
    });
}

/// For one-shot callers that exit after one snapshot (such as the `diag` command): starts
/// counting pending updates if the cache has no current count, and waits for that count
/// to finish, at most `limit`, so that the next [`snapshot`] includes it. The agent service
/// has no need for this; see [`warm_up`].
pub async fn wait_for_pending_updates(limit: Duration) {
    let (_, _) = pending_updates().await;
    updates::UPDATES.settled(limit).await;
}

/// Files a probe's report and hands back its value.
fn keep<T>(reports: &mut Vec<ProbeReport>, (report, value): (ProbeReport, Option<T>)) -> Option<T> {
    reports.push(report);
    value
}

/// Runs one probe under `limit`, timing it. Every outcome yields a report.
async fn run<T>(
    name: &'static str,
    limit: Duration,
    probe: impl Future<Output = Result<T, Error>>,
) -> (ProbeReport, Option<T>) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, probe).await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (value, error) = match outcome {
        Ok(Ok(value)) => (Some(value), None),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Err(_) => (
            None,
            Some(format!(
                "timed out after {}",
                humantime::format_duration(limit)
            )),
        ),
    };
    if let Some(error) = &error {
        tracing::debug!(probe = name, %error, "diagnostics probe failed");
    }
    let report = ProbeReport {
        name: name.to_owned(),
        ok: error.is_none(),
        error,
        elapsed_ms,
    };
    (report, value)
}

/// `PRETTY_NAME` from os-release, cheaply, for enrollment and check-in.
pub fn os_pretty_name() -> Option<String> {
    os::os_release()
        .ok()
        .map(|release| release.pretty_name)
        .filter(|n| !n.is_empty())
}

/// Names of the users logged in now (utmp).
pub fn logged_in_user_names() -> Vec<String> {
    os::logged_in_users()
        .map(|users| users.into_iter().map(|u| u.name).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_probe_times_out_with_a_clear_error() {
        // (tokio's paused clock needs the test-util feature, which the agent does not
        // enable; a 50 ms limit keeps this fast.)
        let (report, value) = run("slow", Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Error>(1)
        })
        .await;
        assert_eq!(value, None);
        assert!(!report.ok);
        assert_eq!(report.error.as_deref(), Some("timed out after 50ms"));
        assert!(
            (50..5_000).contains(&report.elapsed_ms),
            "{}",
            report.elapsed_ms
        );
    }

    #[tokio::test]
    async fn a_failing_probe_reports_its_error() {
        let (report, value) = run("broken", Duration::from_secs(2), async {
            Err::<u8, _>(Error::Unavailable("systemd is not running".into()))
        })
        .await;
        assert_eq!(value, None);
        assert_eq!(report.name, "broken");
        assert!(!report.ok);
        assert_eq!(report.error.as_deref(), Some("systemd is not running"));
    }

    #[tokio::test]
    async fn a_panicking_blocking_probe_is_an_error_not_a_crash() {
        let (report, value) = run(
            "panics",
            Duration::from_secs(2),
            blocking(|| -> Result<u8, Error> { panic!("boom") }),
        )
        .await;
        assert_eq!(value, None);
        assert!(report.error.is_some_and(|e| e.contains("panicked")));
    }

    #[tokio::test]
    async fn a_good_probe_is_ok() {
        let (report, value) = run("fine", Duration::from_secs(2), blocking(|| Ok(7u8))).await;
        assert_eq!(value, Some(7));
        assert!(report.ok);
        assert_eq!(report.error, None);
    }

    #[test]
    fn probe_names_are_unique() {
        let mut names = probe::ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), probe::ALL.len());
    }
}
