//! Scripts that talk to a running service: flush-dns (dnsmasq), restart-service (its
//! refusal path) and clear-print-queue (a real CUPS, and stand-in CUPS tools).

use super::*;

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
