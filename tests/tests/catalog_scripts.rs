//! The starter catalog: every manifest loads and signs, and every script body does what
//! its `changes` says when run directly with its interpreter, with only PATH and its
//! `DESKSIDE_PARAM_*` variables, in a sandbox. Anything that would change this machine
//! runs as a dry run, except on objects the test made itself (temp files, a `sleep`
//! child). The only network used is loopback.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use deskside_controller::catalog;
use deskside_proto::msg::script::{CatalogEntry, Interpreter, ParamKind};
use deskside_tests::daemons;

/// The PATH a script gets, as on an ordinary Linux desktop.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn catalog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog")
}

fn load(name: &str) -> Result<(CatalogEntry, String)> {
    let path = catalog_dir().join(format!("{name}.toml"));
    catalog::load(&path).with_context(|| format!("loading {}", path.display()))
}

fn given(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// How a script run ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Both streams, for assertions that do not care which one a message went to.
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn has(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn drain(stream: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut s) = stream {
            let _ = s.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs catalog script `name` the way the agent does: its interpreter on a file holding
/// the body, an empty environment but PATH and the resolved parameters, its own process
/// group, killed at the manifest's timeout.
fn run(name: &str, params: &[(&str, &str)]) -> Result<Run> {
    run_with_tools(name, params, None)
}

/// [`run`], with `tools` (a directory of stand-in programs) first on PATH.
fn run_with_tools(name: &str, params: &[(&str, &str)], tools: Option<&Path>) -> Result<Run> {
    run_with(name, params, tools, &[])
}

/// [`run_with_tools`], with `extra` variables (e.g. `CUPS_SERVER` for a private CUPS).
fn run_with(
    name: &str,
    params: &[(&str, &str)],
    tools: Option<&Path>,
    extra: &[(&str, &Path)],
) -> Result<Run> {
    let (entry, body) = load(name)?;
    let path = match tools {
        Some(dir) => format!("{}:{PATH}", dir.display()),
        None => PATH.to_owned(),
    };
    let env = entry
        .resolve_params(&given(params))
        .with_context(|| format!("parameters for {name}"))?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join(format!("{name}.script"));
    std::fs::write(&script, body)?;
    let mut child = Command::new(entry.interpreter.path())
        .arg(&script)
        .env_clear()
        .env("PATH", path)
        .envs(env)
        .envs(extra.iter().copied())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", entry.interpreter.path()))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(u64::from(entry.timeout_secs));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            bail!("{name} ran past its {} s timeout", entry.timeout_secs);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    eprintln!("{name} {params:?}:\n{run}");
    Ok(run)
}

/// A directory under /tmp, which clean-temp's pattern requires.
fn tmp_dir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("deskside-test-")
        .tempdir_in("/tmp")?)
}

/// Sets a file's access and modification times `days` days back, with `touch -d`.
fn age(path: &Path, days: u32) -> Result<()> {
    let status = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("{days} days ago"))
        .arg(path)
        .status()?;
    ensure!(status.success(), "touch -d failed on {}", path.display());
    Ok(())
}

/// A `sleep` child that is killed and reaped if the test ends early.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Result<Sleeper> {
        Ok(Sleeper(Command::new("sleep").arg("300").spawn()?))
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_manifest_loads_signs_and_is_documented() -> Result<()> {
    let readme = std::fs::read_to_string(catalog_dir().join("README.md"))?;
    let key = catalog::SigningKey::from_bytes(&[42; 32]);
    let mut names = Vec::new();
    for item in std::fs::read_dir(catalog_dir())? {
        let path = item?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (entry, body) =
            catalog::load(&path).with_context(|| format!("loading {}", path.display()))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        ensure!(
            entry.name == stem,
            "{}: name is {}",
            path.display(),
            entry.name
        );
        ensure!(
            readme.contains(&format!("| `{}` |", entry.name)),
            "catalog/README.md has no row for {}",
            entry.name
        );

        let signature = catalog::sign(&entry, &key);
        catalog::verify(&entry, &body, &signature, &key.verifying_key().to_bytes())?;

        if matches!(entry.interpreter, Interpreter::Sh | Interpreter::Bash) {
            ensure!(body.contains("\nset -eu"), "{}: no `set -eu`", entry.name);
        }
        // Parameters are only ever used quoted.
        for (i, _) in body.match_indices("$DESKSIDE_PARAM_") {
            let before = i.checked_sub(1).and_then(|j| body.get(j..i));
            ensure!(
                before == Some("\""),
                "{}: unquoted $DESKSIDE_PARAM_ at byte {i}",
                entry.name
            );
        }
        for p in &entry.params {
            ensure!(
                body.contains(&format!("\"${}\"", p.env_name())),
                "{}: parameter {} is declared but never read",
                entry.name,
                p.name
            );
            // Whatever changes the machine defaults to a dry run.
            if p.name == "dry_run" {
                ensure!(p.kind == ParamKind::Bool && p.default.as_deref() == Some("true"));
            }
        }
        // Safe with the defaults: every parameter but a target-naming one has one.
        let required: Vec<_> = entry
            .params
            .iter()
            .filter(|p| p.default.is_none())
            .collect();
        ensure!(
            required
                .iter()
                .all(|p| ["host", "pid", "service"].contains(&p.name.as_str())),
            "{}: unexpected required parameters {required:?}",
            entry.name
        );
        names.push(entry.name);
    }
    names.sort();
    ensure!(names.len() >= 12, "only {} scripts: {names:?}", names.len());
    Ok(())
}

#[test]
fn disk_usage_lists_the_largest_directory_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("big"))?;
    std::fs::create_dir(dir.path().join("small"))?;
    std::fs::write(dir.path().join("big/blob"), vec![7u8; 3 * 1024 * 1024])?;
    std::fs::write(dir.path().join("small/note"), b"x")?;
    let path = dir.path().to_str().context("UTF-8 temp path")?;
    let r = run("disk-usage", &[("path", path), ("top", "5")])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.has("Filesystem holding") && r.has("(total)"), "{r}");
    let big = r
        .stdout
        .find(&format!("{path}/big"))
        .context("big missing")?;
    let small = r
        .stdout
        .find(&format!("{path}/small"))
        .context("small missing")?;
    ensure!(big < small, "largest first:\n{r}");
    Ok(())
}

#[test]
fn disk_usage_missing_directory_and_relative_paths_are_refused() -> Result<()> {
    let r = run("disk-usage", &[("path", "/nonexistent-deskside-dir")])?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(r.stderr.contains("does not exist"), "{r}");
    let (entry, _) = load("disk-usage")?;
    for bad in ["/tmp/../etc", "relative", "/a/./b", "/tmp/x;id", "/$(id)"] {
        ensure!(
            entry.resolve_params(&given(&[("path", bad)])).is_err(),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn clean_temp_dry_run_only_lists_old_files() -> Result<()> {
    let dir = tmp_dir()?;
    let old = dir.path().join("old.log");
    let new = dir.path().join("new.log");
    std::fs::write(&old, b"old")?;
    std::fs::write(&new, b"new")?;
    age(&old, 30)?;
    let path = dir.path().to_str().context("UTF-8 temp path")?;
    let r = run("clean-temp", &[("path", path), ("days", "7")])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.has("Dry run: listing only"), "{r}");
    ensure!(r.has("would delete 1 file(s)"), "{r}");
    ensure!(
        r.stdout.contains("old.log") && !r.stdout.contains("new.log"),
        "{r}"
    );
    ensure!(old.exists() && new.exists(), "a dry run deleted something");
    Ok(())
}

#[test]
fn clean_temp_deletes_only_old_regular_files() -> Result<()> {
    let dir = tmp_dir()?;
    // The build may itself live under /tmp (a clone in /tmp): pick a place that is not.
    let base = [
        "/dev/shm",
        env!("CARGO_TARGET_TMPDIR"),
        env!("CARGO_MANIFEST_DIR"),
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| {
        p.canonicalize()
            .is_ok_and(|c| !c.starts_with("/tmp") && !c.starts_with("/var/tmp"))
    })
    .context("no directory outside /tmp and /var/tmp to play the victim")?;
    let outside = tempfile::tempdir_in(base)?;
    let precious = outside.path().join("precious");
    std::fs::write(&precious, b"keep")?;
    age(&precious, 30)?;

    let old = dir.path().join("sub/old.log");
    let new = dir.path().join("new.log");
    let private = dir
        .path()
        .join("systemd-private-abc-cups.service-x/tmp/old");
    let link = dir.path().join("link-to-precious");
    std::fs::create_dir_all(dir.path().join("sub"))?;
    std::fs::create_dir_all(private.parent().context("parent")?)?;
    for f in [&old, &new, &private] {
        std::fs::write(f, b"data")?;
    }
    std::os::unix::fs::symlink(&precious, &link)?;
    for f in [&old, &private, &link] {
        age(f, 30)?;
    }
    let path = dir.path().to_str().context("UTF-8 temp path")?;
    let r = run(
        "clean-temp",
        &[("path", path), ("days", "7"), ("dry_run", "false")],
    )?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.has("deleted 1 file(s); 0 could not be deleted"), "{r}");
    ensure!(!old.exists(), "old file survived");
    ensure!(new.exists(), "new file was deleted");
    ensure!(private.exists(), "a service's private tmp was touched");
    ensure!(
        precious.exists() && link.symlink_metadata().is_ok(),
        "symlink followed"
    );
    Ok(())
}

#[test]
fn clean_temp_refuses_to_leave_tmp() -> Result<()> {
    // /tmp/X/escape -> a directory elsewhere: the path matches the pattern, but resolves
    // outside /tmp, so nothing there may be deleted.
    let dir = tmp_dir()?;
    // The build may itself live under /tmp (a clone in /tmp): pick a place that is not.
    let base = [
        "/dev/shm",
        env!("CARGO_TARGET_TMPDIR"),
        env!("CARGO_MANIFEST_DIR"),
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| {
        p.canonicalize()
            .is_ok_and(|c| !c.starts_with("/tmp") && !c.starts_with("/var/tmp"))
    })
    .context("no directory outside /tmp and /var/tmp to play the victim")?;
    let outside = tempfile::tempdir_in(base)?;
    std::fs::create_dir(outside.path().join("victim"))?;
    let precious = outside.path().join("victim/precious");
    std::fs::write(&precious, b"keep")?;
    age(&precious, 30)?;
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape"))?;
    let through = dir.path().join("escape/victim");
    let path = through.to_str().context("UTF-8 temp path")?;
    let r = run("clean-temp", &[("path", path), ("dry_run", "false")])?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(
        r.stderr.contains("outside /tmp and /var/tmp; refusing"),
        "{r}"
    );
    ensure!(precious.exists(), "deleted outside /tmp");

    let link = dir.path().join("escape");
    let r = run(
        "clean-temp",
        &[
            ("path", link.to_str().context("UTF-8")?),
            ("dry_run", "false"),
        ],
    )?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(r.stderr.contains("is a symbolic link"), "{r}");

    let (entry, _) = load("clean-temp")?;
    for bad in ["/etc", "/tmpfoo", "/tmp/../etc", "/var/tmp/./x", "/home/u"] {
        ensure!(
            entry.resolve_params(&given(&[("path", bad)])).is_err(),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn flush_dns_sends_a_running_dnsmasq_sighup() -> Result<()> {
    let mut dnsmasq = daemons::dnsmasq()?;
    let r = run("flush-dns", &[])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(
        r.stdout.contains(&format!(
            "dnsmasq is running (PID {}); sending SIGHUP",
            dnsmasq.pid()
        )),
        "{r}"
    );
    ensure!(r.stdout.contains("Done: flushed"), "{r}");
    // SIGHUP clears dnsmasq's cache; it does not stop it.
    std::thread::sleep(Duration::from_millis(200));
    ensure!(dnsmasq.is_running(), "dnsmasq died of the SIGHUP");
    Ok(())
}

/// restart-service acts only through systemd. CI and the test machines run without
/// systemd as PID 1 (a container), so this checks the refusal path only; on a machine
/// where systemd runs it checks the dry run instead.
#[test]
fn restart_service_dry_run_refusal_path_only() -> Result<()> {
    let r = run("restart-service", &[("service", "cups")])?;
    if Path::new("/run/systemd/system").is_dir() {
        ensure!(r.code == Some(0), "{r}");
        ensure!(
            r.stdout
                .contains("Dry run: would run: systemctl restart cups.service"),
            "{r}"
        );
    } else {
        ensure!(r.code == Some(3), "{r}");
        ensure!(
            r.stderr.contains("systemd is not running here (PID 1 is "),
            "{r}"
        );
    }
    let (entry, _) = load("restart-service")?;
    for bad in ["gdm", "sshd; reboot", "", "CUPS"] {
        ensure!(
            entry.resolve_params(&given(&[("service", bad)])).is_err(),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn clear_print_queue_lists_then_cancels_jobs_in_a_real_cups() -> Result<()> {
    // A private scheduler with one paused printer holding two jobs.
    let cups = daemons::cups()?;
    let dir = cups.dir.path();
    let server = daemons::cups_server(dir);
    let env = [("CUPS_SERVER", server.as_path())];
    daemons::cups_tool(
        dir,
        "lpadmin",
        &["-p", "office", "-v", "socket://127.0.0.1:9", "-E"],
    )?;
    daemons::cups_tool(dir, "cupsdisable", &["office"])?;
    let job = dir.join("page.txt");
    std::fs::write(&job, "test page\n")?;
    let job = job.display().to_string();
    for _ in 0..2 {
        daemons::cups_tool(dir, "lp", &["-d", "office", &job])?;
    }

    let r = run_with("clear-print-queue", &[], None, &env)?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("Queued jobs on all printers (2):"), "{r}");
    ensure!(
        r.stdout.contains("Dry run: would cancel these 2 job(s)"),
        "{r}"
    );
    let queued = daemons::cups_tool(dir, "lpstat", &["-o"])?;
    ensure!(
        queued.lines().count() == 2,
        "a dry run cancelled jobs: {queued}"
    );

    let r = run_with(
        "clear-print-queue",
        &[("printer", "lab"), ("dry_run", "false")],
        None,
        &env,
    )?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(r.stderr.contains("there is no printer named lab"), "{r}");

    let r = run_with(
        "clear-print-queue",
        &[("printer", "office"), ("dry_run", "false")],
        None,
        &env,
    )?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("Cancelling every job on office"), "{r}");
    ensure!(
        r.stdout
            .contains("Done: the queue of printer office is empty."),
        "{r}"
    );
    let queued = daemons::cups_tool(dir, "lpstat", &["-o"])?;
    ensure!(queued.trim().is_empty(), "jobs left: {queued}");
    Ok(())
}

/// Writes an executable stand-in for a program into `dir`.
fn stub(dir: &Path, name: &str, script: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[test]
fn clear_print_queue_cancels_jobs_through_cups_tools() -> Result<()> {
    // Stand-ins for lpstat and cancel: one printer "office" with two jobs, and a record
    // of what cancel was asked to do. The real CUPS, if any, is never called.
    let tools = tempfile::tempdir()?;
    let record = tools.path().join("cancelled");
    let lpstat = format!(
        r#"#!/bin/sh
case "$1" in
    -r) echo "scheduler is running" ;;
    -p)
        if [ $# -gt 1 ] && [ "$2" != office ]; then echo "lpstat: Invalid destination name in list \"$2\"" >&2; exit 1; fi
        echo "printer office is idle.  enabled since Mon 01 Jan 2026 09:00:00" ;;
    -o)
        [ -f '{record}' ] && exit 0
        echo "office-12  alice  10240  Mon 01 Jan 2026 09:01:00"
        echo "office-13  bob     2048  Mon 01 Jan 2026 09:02:00" ;;
esac
"#,
        record = record.display()
    );
    stub(tools.path(), "lpstat", &lpstat)?;
    stub(
        tools.path(),
        "cancel",
        &format!("#!/bin/sh\necho \"$*\" >'{}'\n", record.display()),
    )?;

    let r = run_with_tools("clear-print-queue", &[], Some(tools.path()))?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("Queued jobs on all printers (2):"), "{r}");
    ensure!(r.stdout.contains("office-13  bob"), "{r}");
    ensure!(
        r.stdout.contains("Dry run: would cancel these 2 job(s)"),
        "{r}"
    );
    ensure!(!record.exists(), "a dry run called cancel");

    let r = run_with_tools(
        "clear-print-queue",
        &[("printer", "lab"), ("dry_run", "false")],
        Some(tools.path()),
    )?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(r.stderr.contains("there is no printer named lab"), "{r}");
    ensure!(!record.exists(), "cancel called for an unknown printer");

    let r = run_with_tools(
        "clear-print-queue",
        &[("printer", "office"), ("dry_run", "false")],
        Some(tools.path()),
    )?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("Cancelling every job on office"), "{r}");
    ensure!(
        r.stdout
            .contains("Done: the queue of printer office is empty."),
        "{r}"
    );
    ensure!(std::fs::read_to_string(&record)?.trim() == "-a office");
    Ok(())
}

#[test]
fn connectivity_check_reaches_an_open_loopback_port() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port().to_string();
    let r = run(
        "connectivity-check",
        &[("host", "127.0.0.1"), ("port", &port), ("count", "1")],
    )?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("DNS: 127.0.0.1 resolves to"), "{r}");
    ensure!(
        r.stdout
            .contains(&format!("TCP 127.0.0.1:{port}: connected")),
        "{r}"
    );
    ensure!(r.stdout.contains("Result: OK"), "{r}");
    drop(listener);
    Ok(())
}

#[test]
fn connectivity_check_reports_a_closed_loopback_port() -> Result<()> {
    let port = TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .to_string();
    let r = run(
        "connectivity-check",
        &[("host", "localhost"), ("port", &port), ("count", "0")],
    )?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(r.stdout.contains("DNS: localhost resolves to"), "{r}");
    ensure!(r.stdout.contains("Ping: skipped (count=0)"), "{r}");
    ensure!(
        r.stdout.contains(&format!(
            "Result: FAILED - port {port} is closed on localhost"
        )) || r
            .stdout
            .contains(&format!("cannot connect to localhost on port {port}")),
        "{r}"
    );
    let (entry, _) = load("connectivity-check")?;
    for bad in [
        "-oProxyCommand=id",
        "a b",
        "127.0.0.1;id",
        "$(id)",
        "x..y",
        "-",
    ] {
        ensure!(
            entry.resolve_params(&given(&[("host", bad)])).is_err(),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn collect_logs_shows_each_log_or_says_none_exists() -> Result<()> {
    let r = run("collect-logs", &[("lines", "10")])?;
    ensure!(r.stdout.contains("== system log (last 10 lines) =="), "{r}");
    ensure!(r.stdout.contains("== kernel log (last 10 lines) =="), "{r}");
    match r.code {
        Some(0) => ensure!(r.stdout.contains("(from "), "{r}"),
        Some(3) => ensure!(r.stderr.contains("no log could be read"), "{r}"),
        _ => bail!("unexpected exit\n{r}"),
    }
    Ok(())
}

#[test]
fn pending_updates_lists_from_the_cache() -> Result<()> {
    let r = run("pending-updates", &[("max_list", "5")])?;
    match r.code {
        Some(0) => {
            ensure!(r.stdout.contains("Package manager: "), "{r}");
            ensure!(r.stdout.contains("Upgradable packages: "), "{r}");
            ensure!(r.stdout.contains("Reboot required: "), "{r}");
        }
        // Debian (CI) has apt: only elsewhere may the script say it has none.
        Some(3) if !Path::new("/usr/bin/apt-get").exists() => {
            ensure!(r.stderr.contains("no supported package manager"), "{r}")
        }
        _ => bail!("unexpected exit\n{r}"),
    }
    Ok(())
}

#[test]
fn repair_packages_dry_run_only_audits_and_simulates() -> Result<()> {
    let r = run("repair-packages", &[])?;
    match r.code {
        Some(0) => {
            ensure!(r.stdout.contains("(dpkg --audit)"), "{r}");
            ensure!(
                r.stdout.contains("Dry run: would run: dpkg --configure -a"),
                "{r}"
            );
            ensure!(r.stdout.contains("--no-download"), "{r}");
        }
        Some(3) if !Path::new("/usr/bin/dpkg").exists() => ensure!(
            r.stderr.contains("Debian/Ubuntu package systems only"),
            "{r}"
        ),
        _ => bail!("unexpected exit\n{r}"),
    }
    Ok(())
}

#[test]
fn resync_clock_dry_run_goes_through_a_running_chronyd() -> Result<()> {
    // A chronyd that does not control the clock (-x): the script finds it running and
    // shows the step it would ask for.
    let _chronyd = daemons::chronyd()?;
    let r = run("resync-clock", &[])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("Clock now: "), "{r}");
    ensure!(r.stdout.contains("Time sync: chronyd is running"), "{r}");
    ensure!(
        r.stdout.contains("Dry run: would run: chronyc -a makestep"),
        "{r}"
    );
    Ok(())
}

#[test]
fn kill_process_ends_our_own_sleep_child() -> Result<()> {
    let mut sleeper = Sleeper::start()?;
    let pid = sleeper.pid();
    let r = run("kill-process", &[("pid", &pid)])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("sleep 300"), "{r}");
    ensure!(
        r.stdout
            .contains(&format!("Dry run: would send SIGTERM to PID {pid} (sleep)")),
        "{r}"
    );
    ensure!(
        sleeper.0.try_wait()?.is_none(),
        "a dry run killed the process"
    );

    let r = run("kill-process", &[("pid", &pid), ("dry_run", "false")])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(
        r.stdout
            .contains(&format!("Done: PID {pid} (sleep) has ended.")),
        "{r}"
    );
    let status = sleeper.0.wait()?;
    ensure!(status.signal() == Some(15), "{status:?}");

    let mut sleeper = Sleeper::start()?;
    let pid = sleeper.pid();
    let r = run(
        "kill-process",
        &[("pid", &pid), ("signal", "KILL"), ("dry_run", "false")],
    )?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(
        r.stdout.contains(&format!("Sending SIGKILL to PID {pid}")),
        "{r}"
    );
    ensure!(sleeper.0.wait()?.signal() == Some(9));
    Ok(())
}

#[test]
fn kill_process_refuses_its_parent_pid_1_and_gone_processes() -> Result<()> {
    // This test process starts the script, so it stands where the agent would.
    let me = std::process::id().to_string();
    let r = run("kill-process", &[("pid", &me)])?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(
        r.stderr
            .contains("it is the Deskside agent running this script"),
        "{r}"
    );

    let (entry, _) = load("kill-process")?;
    for bad in ["1", "0", "-1", "4194305", "12 34", "$$"] {
        ensure!(
            entry.resolve_params(&given(&[("pid", bad)])).is_err(),
            "{bad}"
        );
    }
    ensure!(
        entry
            .resolve_params(&given(&[("pid", "99"), ("signal", "HUP")]))
            .is_err(),
        "only TERM and KILL"
    );

    let mut gone = Command::new("true").spawn()?;
    gone.wait()?;
    let r = run("kill-process", &[("pid", &gone.id().to_string())])?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(r.stderr.contains("there is no process with PID"), "{r}");

    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        let r = run("kill-process", &[("pid", "2"), ("dry_run", "false")])?;
        ensure!(r.code == Some(1), "{r}");
        ensure!(r.stderr.contains("it is a kernel thread"), "{r}");
    }
    Ok(())
}

#[test]
fn reset_network_dry_run_changes_nothing() -> Result<()> {
    let r = run("reset-network", &[])?;
    match r.code {
        Some(0) => ensure!(r.stdout.contains("Dry run: would run: "), "{r}"),
        // A sandbox without a default route has no interface to pick. With one, some
        // tool always resets it: CI installs dhclient (isc-dhcp-client).
        Some(1) => ensure!(r.stderr.contains("there is no default route"), "{r}"),
        _ => bail!("unexpected exit\n{r}"),
    }

    let r = run(
        "reset-network",
        &[("interface", "lo"), ("dry_run", "false")],
    )?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(
        r.stderr
            .contains("refusing to reset the loopback interface lo"),
        "{r}"
    );

    let r = run(
        "reset-network",
        &[("interface", "nosuch0"), ("dry_run", "false")],
    )?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(
        r.stderr
            .contains("there is no network interface named nosuch0"),
        "{r}"
    );

    let (entry, _) = load("reset-network")?;
    for bad in ["eth0;reboot", "../x", "eth 0", "abcdefghijklmnop", "-x"] {
        ensure!(
            entry.resolve_params(&given(&[("interface", bad)])).is_err(),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn network_info_shows_loopback() -> Result<()> {
    let r = run("network-info", &[])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("== Interfaces and addresses =="), "{r}");
    ensure!(r.stdout.contains("127.0.0.1/8"), "{r}");
    ensure!(r.stdout.contains("== Network manager =="), "{r}");
    Ok(())
}

#[test]
fn top_processes_shows_memory_and_tables() -> Result<()> {
    let r = run("top-processes", &[("count", "3")])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.contains("MemTotal:"), "{r}");
    ensure!(r.stdout.contains("== Top 3 by CPU =="), "{r}");
    ensure!(r.stdout.contains("== Top 3 by memory (RSS, KiB) =="), "{r}");
    ensure!(r.stdout.contains("PID"), "{r}");
    Ok(())
}
