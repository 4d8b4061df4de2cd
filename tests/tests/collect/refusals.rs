//! What an honest agent refuses to collect: without the files scope (from a session or the
//! policy), and anything that is not a plain readable regular file, each with its reason.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collecting_needs_the_files_scope_from_a_session_or_the_policy() -> Result<()> {
    let cluster = Cluster::start().await?;
    let prompt = cluster.agent("pc-prompt", PROMPT_FILES).await?;
    let deny = cluster.agent("pc-deny", DENY_FILES).await?;
    let (_profile, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &prompt.id).await?;
    wait_online(&tech, &deny.id).await?;
    let file = cluster.dir.path().join("notes.txt");
    std::fs::write(&file, b"printer jams on tray 2\n")?;
    let path = file.to_string_lossy().into_owned();

    let t = new_ticket(&tech, &prompt.id).await?;
    let e = collect_refused(&tech, &prompt.id, t, &path).await?;
    assert_eq!(e.code, ErrorCode::NoSession, "{}", e.message);
    assert!(e.message.contains("files"), "{}", e.message);

    let t2 = new_ticket(&tech, &deny.id).await?;
    let e = collect_refused(&tech, &deny.id, t2, &path).await?;
    assert_eq!(e.code, ErrorCode::AgentRefused, "{}", e.message);
    assert!(e.message.contains("denies files"), "{}", e.message);

    // A session that grants only diagnostics does not cover files either.
    let ask = |scopes: Vec<Scope>| TechRequest::RequestSession {
        agent: prompt.id.clone(),
        ticket: t,
        scopes,
        duration_secs: 600,
        wait_secs: 30,
    };
    let diagnostics_only = ask(vec![Scope::Diagnostics]);
    let approve = async {
        let mut c = control(&prompt).await?;
        let id = pending_request(&mut c).await?;
        Ok::<_, anyhow::Error>(c.call(&ControlRequest::Approve { id }).await?)
    };
    let (reply, approved) = tokio::join!(tech.request(&diagnostics_only), approve);
    approved?;
    let TechReply::Session(s) = reply? else {
        bail!("session");
    };
    assert!(matches!(s.outcome, SessionOutcome::Approved(_)));
    let e = collect_refused(&tech, &prompt.id, t, &path).await?;
    assert_eq!(e.code, ErrorCode::NoSession, "{}", e.message);
    assert!(e.message.contains("not files"), "{}", e.message);

    // With a session the user approved for files, it is collected.
    let files = ask(vec![Scope::Files]);
    let approve = async {
        let mut c = control(&prompt).await?;
        let id = pending_request(&mut c).await?;
        Ok::<_, anyhow::Error>(c.call(&ControlRequest::Approve { id }).await?)
    };
    let (reply, approved) = tokio::join!(tech.request(&files), approve);
    approved?;
    let TechReply::Session(s) = reply? else {
        bail!("session");
    };
    assert!(matches!(s.outcome, SessionOutcome::Approved(_)));
    let r = collect(&tech, &prompt.id, t, &path).await?;
    assert_eq!(
        std::fs::read(&r.evidence.location)?,
        b"printer jams on tray 2\n"
    );

    // Each refusal is on the timeline and in the agent's audit log.
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::ShowTicket { number: t2 })
        .await?
    else {
        bail!("show");
    };
    assert!(
        v.timeline
            .iter()
            .any(|e| e.kind == "refused" && e.detail.contains("denies files"))
    );
    assert!(evidence_kinds(&tech, t2).await?.is_empty());
    let log = std::fs::read_to_string(deny.state.audit_log())?;
    assert!(
        log.contains("\"scope\":\"files\"") && log.contains("refused"),
        "{log}"
    );
    prompt.stop().await;
    deny.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_plain_readable_regular_files_are_refused_each_with_its_reason()
-> Result<()> {
    let cluster = Cluster::start_with(Options {
        max_collect_bytes: 64 * 1024,
        ..Options::default()
    })
    .await?;
    // The machine's policy lets these through, so what refuses them is what they are.
    let policy = format!(
        "{ALLOW_FILES}[files]\nallow = [\"{}/**\", \"/dev/zero\"]\n",
        cluster.dir.path().display()
    );
    let agent = cluster.agent("pc-files", &policy).await?;
    let (_profile, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let ticket = new_ticket(&tech, &agent.id).await?;
    let dir = cluster.dir.path().join("files");
    std::fs::create_dir_all(&dir)?;
    let good = dir.join("good.txt");
    std::fs::write(&good, b"fine")?;
    let big = dir.join("big.bin");
    std::fs::write(&big, noise(64 * 1024 + 1, 2))?;
    let link = dir.join("link");
    std::os::unix::fs::symlink(&good, &link)?;
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status()?.success());
    let locked = dir.join("locked.txt");
    std::fs::write(&locked, b"secret")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000))?;
    }
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut cases = vec![
        (
            "relative path",
            "etc/passwd".to_owned(),
            "not an absolute path",
        ),
        (
            "dot-dot path",
            format!("{}/../good.txt", s(&dir)),
            "not an absolute path",
        ),
        ("directory", s(&dir), "a directory"),
        ("character device", "/dev/zero".into(), "a character device"),
        ("fifo", s(&fifo), "named pipe"),
        ("symlink", s(&link), "symbolic link"),
        ("missing", s(&dir.join("nope")), "does not exist"),
        (
            "too large",
            s(&big),
            "65537 bytes, over the 65536-byte limit",
        ),
    ];
    // root reads anything; the unreadable case only means something for other users.
    let root = std::fs::File::open(&locked).is_ok();
    if !root {
        cases.push(("unreadable", s(&locked), "cannot be read"));
    }
    for (what, path, expect) in cases {
        let e = collect_refused(&tech, &agent.id, ticket, &path).await?;
        assert_eq!(e.code, ErrorCode::FileUnavailable, "{what}: {e:?}");
        assert!(e.message.contains(expect), "{what}: {}", e.message);
        // The agent keeps serving: the next request is answered.
        let r = collect(&tech, &agent.id, ticket, &s(&good)).await?;
        assert_eq!(r.manifest.size_bytes, 4, "after {what}");
    }
    assert!(leftovers(&cluster.data.evidence())?.is_empty());
    let (code, _, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args([
            "collect",
            &agent.id,
            "/dev/zero",
            "--ticket",
            &ticket.to_string(),
        ]))?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    agent.stop().await;
    Ok(())
}
