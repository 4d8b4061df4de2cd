//! The agent's key and the machine's secrets never leave, whatever name, hard link or bind
//! mount reaches them.

use super::*;

/// A bind mount that is undone when dropped, even when the test fails part-way.
struct BindMount(PathBuf);

impl BindMount {
    /// `Ok(None)` when this machine does not let the test mount (not root, a sandbox).
    fn new(source: &Path, target: &Path) -> Result<Option<BindMount>> {
        std::fs::create_dir_all(target)?;
        let out = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(Some(BindMount(target.to_owned()))),
            Ok(o) => {
                println!(
                    "SKIPPED the bind mount case: mount --bind is not permitted here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                Ok(None)
            }
            Err(e) => {
                println!("SKIPPED the bind mount case: cannot run mount: {e}");
                Ok(None)
            }
        }
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_key_and_the_machines_secrets_never_leave_under_any_name() -> Result<()> {
    let cluster = Cluster::start().await?;
    let dir = cluster.dir.path().to_owned();
    let state = dir.join("agent-pc-guard");
    // A policy as open as an admin could make it: the state directory and /etc/shadow
    // are allowed too, and still refused.
    let policy = format!(
        "{ALLOW_FILES}[files]\nallow = [\"{d}/logs/**\", \"{d}/links/**\", \"{d}/mnt/**\", \"{s}/**\", \"/etc/shadow\"]\ndeny = [\"{d}/logs/private/**\"]\n",
        d = dir.display(),
        s = state.display()
    );
    let agent = cluster.agent("pc-guard", &policy).await?;
    assert_eq!(agent.state.root(), state);
    let (_profile, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let ticket = new_ticket(&tech, &agent.id).await?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let key = agent.state.key();

    std::fs::create_dir_all(dir.join("logs/private"))?;
    std::fs::create_dir_all(dir.join("links"))?;
    let log = dir.join("logs/app.log");
    std::fs::write(&log, b"app started\napp crashed\n")?;
    std::fs::write(dir.join("logs/private/hr.log"), b"salaries")?;
    let parent_link = dir.join("links/state");
    std::os::unix::fs::symlink(&state, &parent_link)?;
    // In /tmp (the cluster's directory), on the state directory's filesystem.
    let hard_link = dir.join("logs/agent.log");
    std::fs::hard_link(&key, &hard_link)?;

    let mut cases: Vec<(&str, String, ErrorCode, String)> = vec![
        (
            "the key by its path",
            s(&key),
            ErrorCode::AgentRefused,
            "the agent's own state directory".into(),
        ),
        (
            "the key through a parent symbolic link",
            s(&parent_link.join("agent.key")),
            ErrorCode::FileUnavailable,
            format!("goes through the symbolic link {}", s(&parent_link)),
        ),
        (
            "the key through a hard link",
            s(&hard_link),
            ErrorCode::AgentRefused,
            format!("the same file as {}", s(&key)),
        ),
        (
            "the audit log",
            s(&agent.state.audit_log()),
            ErrorCode::AgentRefused,
            "the agent's own state directory".into(),
        ),
        (
            "password hashes",
            "/etc/shadow".into(),
            ErrorCode::AgentRefused,
            "password hashes (/etc/shadow, /etc/gshadow), which the agent never sends; no policy can allow it".into(),
        ),
        (
            "a path the policy denies",
            s(&dir.join("logs/private/hr.log")),
            ErrorCode::AgentRefused,
            format!("the machine's policy denies {}/logs/private/**", s(&dir)),
        ),
        (
            "a path no allow glob covers",
            "/etc/hostname".into(),
            ErrorCode::AgentRefused,
            "no [files] allow glob".into(),
        ),
    ];
    let mounted = BindMount::new(&state, &dir.join("mnt"))?;
    if mounted.is_some() {
        cases.push((
            "the key through a bind mount",
            s(&dir.join("mnt/agent.key")),
            ErrorCode::AgentRefused,
            format!("the same file as {}", s(&key)),
        ));
    }
    for (what, path, code, expect) in &cases {
        let e = collect_refused(&tech, &agent.id, ticket, path).await?;
        assert_eq!(e.code, *code, "{what}: {e:?}");
        assert!(e.message.contains(expect.as_str()), "{what}: {}", e.message);
        assert!(e.message.contains(path.as_str()), "{what}: {}", e.message);
    }
    drop(mounted);
    assert!(evidence_kinds(&tech, ticket).await?.is_empty());

    // The refusals name their rule on the timeline and in the agent's audit log.
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        bail!("show");
    };
    let audit = std::fs::read_to_string(agent.state.audit_log())?;
    for (what, _, _, expect) in &cases {
        assert!(
            v.timeline
                .iter()
                .any(|e| e.kind == "refused" && e.detail.contains(expect.as_str())),
            "{what}: {:?}",
            v.timeline
        );
        assert!(audit.contains(expect.as_str()), "{what}: {audit}");
    }

    // The technician's CLI says which rule, with the agent-refused exit code.
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args([
            "collect",
            &agent.id,
            "/etc/shadow",
            "--ticket",
            &ticket.to_string(),
        ]))?;
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(stderr.contains("password hashes"), "{stderr}");

    // An allowed log file still arrives, byte-exact.
    let r = collect(&tech, &agent.id, ticket, &s(&log)).await?;
    assert_eq!(
        std::fs::read(&r.evidence.location)?,
        b"app started\napp crashed\n"
    );
    agent.stop().await;
    Ok(())
}
