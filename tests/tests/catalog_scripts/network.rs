//! Network scripts: connectivity-check against loopback ports, reset-network as a dry run.

use super::*;

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
