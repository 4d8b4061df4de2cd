//! `deskside collect` end to end: a file read on the agent's machine, streamed raw over
//! mutual-TLS QUIC, checked and stored byte-exact as signed evidence, exported in a
//! bundle that verifies; and every way an honest agent refuses, and a lying one is
//! refused, with the agent (or the controller) serving the next request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskside_agent::control::ControlRequest;
use deskside_controller::bundle;
use deskside_controller::client::{Refused, TechClient};
use deskside_controller::server::Options;
use deskside_proto::evidence::EvidenceKind;
use deskside_proto::msg::agent::{AgentReply, AgentRequest, CheckIn, NoticeAck, SignedItem};
use deskside_proto::msg::files::FileManifest;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{Scope, SessionOutcome};
use deskside_proto::msg::tech::{CollectReport, ErrorCode, ErrorReply, TechReply, TechRequest};
use deskside_tests::hostile::{EVENTUALLY, Scene, new_ticket};
use deskside_tests::{Cluster, bin, control, pending_request, run, wait_online};
use deskside_transport::{endpoint, framed, pki};
use sha2::{Digest, Sha256};

const ALLOW_FILES: &str = "[scopes]\ndiagnostics = \"allow\"\nfiles = \"allow\"\n";
const PROMPT_FILES: &str = "[scopes]\ndiagnostics = \"prompt\"\nfiles = \"prompt\"\n";
const DENY_FILES: &str = "[scopes]\ndiagnostics = \"allow\"\nfiles = \"deny\"\n";

/// Bytes that do not compress or repeat, so a swapped or shifted chunk cannot hide.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(seed.to_le_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

async fn collect(tech: &TechClient, agent: &str, ticket: u64, path: &str) -> Result<CollectReport> {
    let req = TechRequest::Collect {
        agent: agent.into(),
        ticket,
        path: path.into(),
    };
    match tech.stream(&req, |_| {}).await? {
        TechReply::Collected(r) => Ok(*r),
        other => bail!("unexpected {other:?}"),
    }
}

async fn collect_refused(
    tech: &TechClient,
    agent: &str,
    ticket: u64,
    path: &str,
) -> Result<ErrorReply> {
    match collect(tech, agent, ticket, path).await {
        Ok(r) => bail!("{path} was collected: {r:?}"),
        Err(e) => Ok(e
            .downcast::<Refused>()
            .map_err(|e| anyhow::anyhow!("not a refusal: {e:#}"))?
            .0),
    }
}

async fn evidence_kinds(tech: &TechClient, ticket: u64) -> Result<Vec<String>> {
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        bail!("show");
    };
    Ok(v.evidence.iter().map(|e| e.kind.clone()).collect())
}

/// Files under the evidence directory that are not blobs: partial writes left behind.
fn leftovers(evidence: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !evidence.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(evidence)? {
        let path = entry?.path();
        if path.is_dir() {
            continue;
        }
        out.push(path);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collected_file_is_stored_byte_exact_and_its_bundle_verifies() -> Result<()> {
    let cluster = Cluster::start().await?;
    let agent = cluster.agent("pc-files", ALLOW_FILES).await?;
    let (_profile, tech) = cluster.technician("alice", Tier::L1).await?;
    wait_online(&tech, &agent.id).await?;
    let ticket = new_ticket(&tech, &agent.id).await?;

    // Not a multiple of the transfer's chunk size, so the last piece is short.
    let data = noise(3 * 1024 * 1024 + 12_345, 1);
    let source = cluster.dir.path().join("crash.log");
    std::fs::write(&source, &data)?;
    let path = source.to_string_lossy().into_owned();
    let report = collect(&tech, &agent.id, ticket, &path).await?;
    let sha = hex::encode(Sha256::digest(&data));
    assert_eq!(report.evidence.sha256, sha);
    assert_eq!(report.manifest.sha256, sha);
    assert_eq!(report.manifest.size_bytes, data.len() as u64);
    assert_eq!(report.manifest.path, path);
    assert_eq!(report.evidence.kind, "file");
    assert_eq!(report.manifest_evidence.kind, "file_manifest");
    assert!(report.evidence.signature.is_some());
    assert_eq!(std::fs::read(&report.evidence.location)?, data);
    let manifest: FileManifest =
        serde_json::from_slice(&std::fs::read(&report.manifest_evidence.location)?)?;
    assert_eq!(manifest, report.manifest);
    assert!(leftovers(&cluster.data.evidence())?.is_empty());

    // On the ticket, with both timeline entries.
    let TechReply::Ticket(v) = tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        bail!("show");
    };
    assert!(
        v.evidence
            .iter()
            .any(|e| e.sha256 == sha && e.kind == "file")
    );
    assert!(
        v.timeline
            .iter()
            .any(|e| e.kind == "file" && e.evidence_sha256.as_deref() == Some(sha.as_str())),
        "{:?}",
        v.timeline
    );

    // Through the real CLI too, as JSON.
    let small = cluster.dir.path().join("hosts");
    std::fs::write(&small, b"127.0.0.1 localhost\n")?;
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args(["collect", &agent.id])
        .arg(&small)
        .args(["--ticket", &ticket.to_string(), "--json"]))?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(
        json.pointer("/evidence/sha256").and_then(|v| v.as_str()),
        Some(hex::encode(Sha256::digest(b"127.0.0.1 localhost\n")).as_str())
    );
    assert_eq!(
        json.pointer("/manifest/size_bytes")
            .and_then(|v| v.as_u64()),
        Some(20)
    );

    // Exported: the bundle holds the file byte-exact and verifies offline.
    let out = cluster.dir.path().join("bundle");
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .env("DESKSIDE_PROFILE", cluster.profile_path("alice"))
        .args(["ticket", "export", &ticket.to_string(), "--out"])
        .arg(&out))?;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(std::fs::read(out.join(bundle::ITEMS_DIR).join(&sha))?, data);
    let verified = bundle::verify(&out)?;
    assert_eq!((verified.items, verified.signed), (4, 4));
    let (code, stdout, _) = run(Command::new(bin("deskside")?)
        .args(["ticket", "verify"])
        .arg(&out))?;
    assert_eq!(code, 0, "{stdout}");

    // A changed byte in the bundled file is caught.
    let item = out.join(bundle::ITEMS_DIR).join(&sha);
    let mut altered = data.clone();
    if let Some(b) = altered.get_mut(1_000_000) {
        *b ^= 1;
    }
    std::fs::write(&item, &altered)?;
    let (code, stdout, stderr) = run(Command::new(bin("deskside")?)
        .args(["ticket", "verify"])
        .arg(&out))?;
    assert_eq!(code, 8, "{stdout}\n{stderr}");
    assert!(stderr.contains("altered"), "{stderr}");

    // The agent's own audit log says what left the machine.
    let log = std::fs::read_to_string(agent.state.audit_log())?;
    assert!(log.contains(&path) && log.contains(&sha), "{log}");
    agent.stop().await;
    Ok(())
}

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
        c.call(&ControlRequest::Approve { id }).await
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
        c.call(&ControlRequest::Approve { id }).await
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

/// What a lying agent does with a collect request.
#[derive(Debug, Clone, Copy)]
enum Lie {
    /// Announces 1000 bytes, sends 500 and ends the stream.
    Short,
    /// Announces 1000 bytes and sends 9000.
    Long,
    /// Honest bytes, a manifest with another file's hash.
    WrongHash,
    /// Honest bytes, a manifest that claims more of them.
    WrongSize,
    /// A manifest signed with a key that is not the agent's.
    ForgedManifest,
    /// Announces more than the controller's limit.
    OverLimit,
}

struct RawAgent {
    id: String,
    cert_pem: String,
    key_pem: String,
}

fn sign(key_pem: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    Ok(pki::sign_evidence(key_pem, &digest)?)
}

/// Answers one collect request the way `lie` says.
async fn lie_once(agent: &RawAgent, conn: &quinn::Connection, lie: Lie) -> Result<()> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let req: AgentRequest = framed::recv_within(&mut recv, EVENTUALLY).await?;
    let AgentRequest::CollectFile {
        requester,
        path,
        max_bytes,
    } = req
    else {
        bail!("expected a collect request, got {req:?}");
    };
    let honest = noise(1000, 7);
    let declared = match lie {
        Lie::OverLimit => max_bytes + 1,
        _ => 1000,
    };
    framed::send(
        &mut send,
        &AgentReply::FileStart {
            size_bytes: declared,
        },
    )
    .await?;
    let body: Vec<u8> = match lie {
        Lie::Short => noise(500, 7),
        Lie::Long => noise(9000, 7),
        Lie::OverLimit => noise(64 * 1024, 7),
        _ => honest.clone(),
    };
    // The controller may stop reading at any point; that is the point.
    let _ = send.write_all(&body).await;
    if matches!(lie, Lie::Short | Lie::Long | Lie::OverLimit) {
        let _ = send.finish();
        return Ok(());
    }
    let mut manifest = FileManifest {
        path,
        size_bytes: 1000,
        sha256: hex::encode(Sha256::digest(&honest)),
        file_signature: hex::encode(sign(&agent.key_pem, &honest)?),
        modified_at_secs: 0,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        hostname: "liar".into(),
        agent: agent.id.clone(),
        technician: requester.technician,
        ticket: requester.ticket,
        collected_at_ms: 0,
    };
    match lie {
        Lie::WrongHash => manifest.sha256 = hex::encode(Sha256::digest(b"something else")),
        Lie::WrongSize => manifest.size_bytes = 2000,
        _ => {}
    }
    let bytes = serde_json::to_vec(&manifest)?;
    let key = match lie {
        Lie::ForgedManifest => rcgen::KeyPair::generate()?.serialize_pem(),
        _ => agent.key_pem.clone(),
    };
    let item = SignedItem {
        key: "liar-manifest-0001".into(),
        kind: EvidenceKind::FileManifest,
        signature: sign(&key, &bytes)?,
        bytes,
        redaction: vec![],
    };
    let _ = framed::send(&mut send, &AgentReply::FileSent(Box::new(item))).await;
    let _ = send.finish();
    let ack: NoticeAck = framed::recv_within(&mut recv, EVENTUALLY).await?;
    let NoticeAck::Rejected { reason } = ack else {
        bail!("{lie:?}: the controller accepted a lie: {ack:?}");
    };
    assert!(!reason.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_agent_loses_the_transfer_and_nothing_of_it_is_kept() -> Result<()> {
    let scene = Scene::start_with(Options {
        max_collect_bytes: 32 * 1024,
        ..Options::default()
    })
    .await?;
    let state = deskside_agent::state::StateDir::new(scene.cluster.dir.path().join("raw-liar"));
    let token = scene.cluster.token(Duration::from_secs(60))?;
    let enrolled = deskside_agent::enroll::enroll(&state, &token).await?;
    let liar = RawAgent {
        id: enrolled.agent_id,
        cert_pem: std::fs::read_to_string(state.cert())?,
        key_pem: std::fs::read_to_string(state.key())?,
    };
    let addr = scene.addr().await?;
    let ep = endpoint::client_endpoint(addr)?;
    let conn = endpoint::connect(
        &ep,
        addr,
        scene.client_config(&liar.cert_pem, &liar.key_pem)?,
    )
    .await?;
    let (mut hello_send, _hello_recv) = endpoint::hello(&conn, "raw agent").await?;
    let checkin = CheckIn {
        hostname: "liar".into(),
        os: "test".into(),
        kernel: "test".into(),
        agent_version: "test".into(),
    };
    framed::send(&mut hello_send, &checkin).await?;
    wait_online(&scene.tech, &liar.id).await?;
    let ticket = new_ticket(&scene.tech, &liar.id).await?;

    let cases = [
        (Lie::Short, "after 500 of the 1000 bytes"),
        (Lie::Long, "no manifest"),
        (Lie::WrongHash, "hash to"),
        (Lie::WrongSize, "says 2000 bytes but 1000 arrived"),
        (Lie::ForgedManifest, "rejected"),
        (Lie::OverLimit, "over the 32768-byte limit"),
    ];
    for (lie, expect) in cases {
        let (refusal, lied) = tokio::join!(
            collect_refused(&scene.tech, &liar.id, ticket, "/var/log/syslog"),
            lie_once(&liar, &conn, lie)
        );
        lied.with_context(|| format!("{lie:?}"))?;
        let e = refusal?;
        assert_eq!(e.code, ErrorCode::AgentFailed, "{lie:?}: {e:?}");
        assert!(e.message.contains(expect), "{lie:?}: {}", e.message);
        assert!(
            evidence_kinds(&scene.tech, ticket).await?.is_empty(),
            "{lie:?}"
        );
        assert!(
            leftovers(&scene.cluster.data.evidence())?.is_empty(),
            "{lie:?}: partial blob left"
        );
        // The liar's connection survives; everyone else is served.
        assert!(conn.close_reason().is_none(), "{lie:?}");
        scene.good_still_served().await?;
    }
    let TechReply::Ticket(v) = scene
        .tech
        .request(&TechRequest::ShowTicket { number: ticket })
        .await?
    else {
        bail!("show");
    };
    assert!(v.timeline.iter().filter(|e| e.kind == "rejected").count() >= cases.len());
    // No blob holds the honest bytes the liar sent.
    let honest = hex::encode(Sha256::digest(noise(1000, 7)));
    let mut blobs = Vec::new();
    for dir in std::fs::read_dir(scene.cluster.data.evidence())? {
        let dir = dir?.path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir)? {
                blobs.push(f?.file_name().to_string_lossy().into_owned());
            }
        }
    }
    assert!(!blobs.contains(&honest), "{blobs:?}");
    conn.close(0u32.into(), b"done");
    scene.stop().await;
    Ok(())
}
