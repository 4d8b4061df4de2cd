//! Scripts about the system itself: logs, packages, the clock and processes.

use super::*;

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
