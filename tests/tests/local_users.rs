//! Who may answer on the agent's control socket, with real uids: the test runs as root
//! (as CI does), makes two users, and runs the real `deskside-agent` CLI as each. One has
//! a console login in the agent's utmp, the other only an SSH login: the first may list
//! and approve, the second is refused with the rule, root may always. Every request is
//! judged afresh: a user who logs out loses the socket on the same connection.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_agent::control::ControlClient;
use deskside_agent::policy::DEFAULT_POLICY;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{Scope, SessionOutcome};
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::hostile::new_ticket;
use deskside_tests::local::{User, ensure_user, is_root};
use deskside_tests::{Cluster, bin, pending_request, run, wait_online};

/// Has a console login (tty2) in the agent's utmp.
const AT_THE_MACHINE: &str = "deskside-seat";
/// Has only an SSH login (pts/0 from a remote address).
const OVER_SSH: &str = "deskside-ssh";

/// The utmp the agent reads: `AT_THE_MACHINE` on tty2 (if `at_machine`), `OVER_SSH` on
/// pts/0 from 192.0.2.7. The records name this test's pid, which is alive.
fn write_utmp(path: &Path, at_machine: bool) -> Result<()> {
    let pid = i32::try_from(std::process::id())?;
    let mut records =
        deskside_agent::os::user_process_record(pid, "pts/0", OVER_SSH, "192.0.2.7", 1);
    if at_machine {
        records.extend(deskside_agent::os::user_process_record(
            pid,
            "tty2",
            AT_THE_MACHINE,
            "",
            1,
        ));
    }
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, records)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The CLI as `user` (root when `None`), talking to `socket`.
fn cli(exe: &Path, socket: &Path, home: &Path, user: Option<User>, args: &[&str]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("--socket")
        .arg(socket)
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null());
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_at_the_machine_answers_another_uid_is_refused_root_may() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: this test makes users and drops to them; run it as root (CI does)");
        return Ok(());
    }
    let seat = ensure_user(AT_THE_MACHINE)?;
    let ssh = ensure_user(OVER_SSH)?;

    // The socket's directory is 0755 like /run/deskside-agent; the CLI is copied there so
    // the other uids can run it whatever the checkout's permissions.
    let shared = tempfile::Builder::new()
        .prefix("deskside-control")
        .tempdir()?;
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755))?;
    let exe = shared.path().join("deskside-agent");
    std::fs::copy(bin("deskside-agent")?, &exe)?;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
    let socket = shared.path().join("run").join("control.sock");
    let utmp = shared.path().join("utmp");
    write_utmp(&utmp, true)?;
    let home = shared.path();

    let mut cluster = Cluster::start().await?;
    let agent = cluster
        .agent_for_local_users("desk", DEFAULT_POLICY, &socket, &utmp)
        .await?;
    let (_p, tech) = cluster.technician("ann", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let ticket = new_ticket(&tech, &agent.id).await?;

    // The agent made the socket's directory 0755 and the socket 0666; its state stays 0700.
    let mode =
        |p: &Path| -> Result<u32> { Ok(std::fs::metadata(p)?.permissions().mode() & 0o7777) };
    assert_eq!(mode(socket.parent().context("socket dir")?)?, 0o755);
    assert_eq!(mode(&socket)?, 0o666);
    assert_eq!(mode(agent.state.root())?, 0o700);

    let tech = std::sync::Arc::new(tech);
    let asked = {
        let tech = tech.clone();
        let req = TechRequest::RequestSession {
            agent: agent.id.clone(),
            ticket,
            scopes: vec![Scope::Diagnostics],
            duration_secs: 600,
            wait_secs: 120,
        };
        tokio::spawn(async move { tech.request(&req).await })
    };
    let mut root_control = ControlClient::connect(&agent.state).await?;
    let id = pending_request(&mut root_control).await?;
    let id_arg = id.to_string();

    // The SSH-only user: refused with who may answer, not a bare EACCES on a path.
    for args in [vec!["pending"], vec!["approve", id_arg.as_str()]] {
        let (code, out, err) = run(&mut cli(&exe, &socket, home, Some(ssh), &args))?;
        assert_eq!(code, 1, "{args:?} as {OVER_SSH}: {out}{err}");
        assert!(
            err.contains(&format!("{OVER_SSH} (uid {}) may not answer", ssh.uid))
                && err.contains("only root and users with a local session")
                && !err.contains("os error 13"),
            "{args:?} as {OVER_SSH}: {err}"
        );
    }
    assert_eq!(
        pending_request(&mut root_control).await?,
        id,
        "still pending"
    );

    // The user at the machine lists the request and approves it.
    let (code, out, err) = run(&mut cli(
        &exe,
        &socket,
        home,
        Some(seat),
        &["pending", "--json"],
    ))?;
    assert_eq!(code, 0, "pending as {AT_THE_MACHINE}: {err}");
    let status: serde_json::Value = serde_json::from_str(&out)?;
    let first = status.pointer("/pending/0");
    assert_eq!(
        first.and_then(|p| p.get("id")).and_then(|v| v.as_u64()),
        Some(u64::from(id)),
        "{out}"
    );
    assert_eq!(
        first
            .and_then(|p| p.pointer("/ask/technician"))
            .and_then(|v| v.as_str()),
        Some("ann"),
        "{out}"
    );
    let (code, out, err) = run(&mut cli(
        &exe,
        &socket,
        home,
        Some(seat),
        &["approve", &id_arg],
    ))?;
    assert_eq!(code, 0, "approve as {AT_THE_MACHINE}: {err}");
    assert!(out.contains("approved"), "{out}");
    match asked.await?? {
        TechReply::Session(r) => assert!(
            matches!(r.outcome, SessionOutcome::Approved(_)),
            "{:?}",
            r.outcome
        ),
        other => bail!("unexpected {other:?}"),
    }

    // Root may, with no session at all.
    let (code, out, err) = run(&mut cli(&exe, &socket, home, None, &["pending"]))?;
    assert_eq!(code, 0, "pending as root: {err}");
    assert!(out.contains("Active session"), "{out}");

    // The audit log names who answered.
    let (entries, _) = deskside_agent::audit::read(&agent.state.audit_log())?;
    let who = format!(
        "approved by {AT_THE_MACHINE} (uid {}, local session tty2)",
        seat.uid
    );
    assert!(
        entries
            .iter()
            .any(|e| e.outcome == "answered" && e.ticket == ticket && e.detail.contains(&who)),
        "no audit entry naming {who}: {entries:#?}"
    );

    // One connection, judged per request: `support` keeps its connection and polls; once
    // the user has logged out (utmp without their record) its next request is refused.
    let mut support = cli(&exe, &socket, home, Some(seat), &["support"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = support.stdout.take().context("support's stdout")?;
    // Read its screen to the end (a closed pipe would end it for the wrong reason).
    let (shown_tx, shown_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Your support code") {
                let _ = shown_tx.send(());
            }
        }
    });
    let shown =
        tokio::task::spawn_blocking(move || shown_rx.recv_timeout(Duration::from_secs(60))).await?;
    assert!(
        shown.is_ok(),
        "`support` as {AT_THE_MACHINE} showed no code"
    );
    write_utmp(&utmp, false)?;
    let bound = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = support.try_wait()? {
            break status;
        }
        if Instant::now() > bound {
            let _ = support.kill();
            let _ = support.wait();
            let mut err = String::new();
            if let Some(mut e) = support.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err)?;
            }
            bail!("`support` kept its connection after the user logged out: {err}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut err = String::new();
    if let Some(mut e) = support.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err)?;
    }
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{AT_THE_MACHINE} (uid {}) may not answer",
            seat.uid
        )),
        "{err}"
    );

    agent.stop().await;
    cluster.stop().await;
    Ok(())
}
