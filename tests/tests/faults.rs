//! Fault injection: the real `deskside serve` and `deskside-agent run` processes are
//! `kill -9`ed at random points while diagnostics snapshots and script runs (with
//! ~0.5 MiB of output each) are being uploaded, then restarted. At the end every item the
//! agent produced must be stored on the controller exactly once — none lost, none
//! doubled — and neither side's state may be corrupt.
//!
//! CI runs a modest count; more on demand, with a seed to replay a run:
//!   DESKSIDE_FAULT_ROUNDS=200 DESKSIDE_FAULT_SEED=42 \
//!     cargo test -p deskside-tests --test faults -- --nocapture

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_agent::state::{StateDir, write_atomic};
use deskside_controller::cli::admin::{make_token, script_add};
use deskside_controller::cli::tech::login_to;
use deskside_controller::client::TechClient;
use deskside_controller::datadir::DataDir;
use deskside_controller::profile::Profile;
use deskside_controller::store::{Store, TokenFor};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::bin;
use deskside_tests::{audited_keys, spooled};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// Rounds of "start uploads, kill something, restart it" in the normal test run.
const DEFAULT_ROUNDS: u32 = 6;
/// Uploads started per round, at the same time.
const UPLOADS_PER_ROUND: usize = 3;
/// No request may take longer than this to end one way or the other: a hang fails.
const REQUEST_BOUND: Duration = Duration::from_secs(60);
/// How long the agent gets to deliver its spool once everything is up again.
const SETTLE: Duration = Duration::from_secs(90);

const POLICY: &str = "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"allow\"\n";
/// ~0.5 MiB of output: the run record is large enough for kills to land mid-upload.
const UPLOAD_BODY: &str = "head -c 393216 /dev/urandom | base64\n";

struct Proc {
    name: &'static str,
    child: Option<Child>,
    cmd: Box<dyn Fn() -> Result<Command> + Send>,
    log: PathBuf,
    kills: u32,
}

impl Proc {
    fn start(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = (self.cmd)()?
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
            self.kills += 1;
        }
    }

    /// SIGTERM and wait: the graceful stop at the end.
    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            deskside_tests::terminate(c, Duration::from_secs(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the controller's database holds for `agent`, checked for consistency.
struct Stored {
    deliveries: BTreeMap<String, String>,
    evidence: usize,
}

fn stored(data: &DataDir, agent: &str) -> Result<Stored> {
    let db = rusqlite::Connection::open(data.database())?;
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        bail!("the controller's database is corrupt: {check}");
    }
    let mut deliveries = BTreeMap::new();
    let mut q =
        db.prepare("SELECT key, evidence_sha256 FROM deliveries WHERE agent_id = ?1 ORDER BY key")?;
    let rows = q.query_map([agent], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    for row in rows {
        let (key, sha) = row?;
        if let Some(sha) = sha {
            deliveries.insert(key, sha);
        }
    }
    // Every stored item: its blob is whole, and exactly one timeline entry records it.
    let mut q = db.prepare(
        "SELECT e.sha256, (SELECT COUNT(*) FROM timeline t WHERE t.ticket = e.ticket AND t.evidence_sha256 = e.sha256) \
         FROM evidence e WHERE e.agent_id = ?1",
    )?;
    let rows = q.query_map([agent], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut evidence = 0;
    for row in rows {
        let (sha, entries) = row?;
        if entries != 1 {
            bail!("evidence {sha} has {entries} timeline entries (doubled or orphaned)");
        }
        let blob = data
            .evidence()
            .join(sha.get(..2).unwrap_or_default())
            .join(&sha);
        let bytes = std::fs::read(&blob).with_context(|| format!("reading {}", blob.display()))?;
        if hex::encode(Sha256::digest(&bytes)) != sha {
            bail!("blob {} does not hash to its name", blob.display());
        }
        evidence += 1;
    }
    Ok(Stored {
        deliveries,
        evidence,
    })
}

#[derive(Debug, Default)]
struct Outcomes {
    stored: u32,
    failed: u32,
    reasons: BTreeMap<String, u32>,
}

async fn upload(
    profile: Profile,
    agent: String,
    ticket: u64,
    script: bool,
) -> Result<bool, String> {
    let client = TechClient::connect(&profile)
        .await
        .map_err(|e| format!("connect: {e:#}"))?;
    let req = if script {
        TechRequest::RunScript {
            agent,
            ticket,
            script: "upload".into(),
            params: Vec::new(),
        }
    } else {
        TechRequest::Diagnostics { agent, ticket }
    };
    let reply = if script {
        client.stream(&req, |_| {}).await
    } else {
        client.request(&req).await
    };
    match reply {
        Ok(TechReply::Diagnostics(_) | TechReply::RunFinished(_)) => Ok(true),
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        // Refusals by code; transport errors by their first words.
        Err(e) => Err(match e.refused() {
            Some(r) => format!("{:?}", r.code),
            None => format!("{:#}", anyhow::Error::from(e))
                .chars()
                .take(48)
                .collect(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_and_doubles_nothing() -> Result<()> {
    let rounds: u32 = std::env::var("DESKSIDE_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let seed: u64 = std::env::var("DESKSIDE_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    eprintln!("fault injection: {rounds} rounds, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir()?;
    let result = run_faults(rounds, seed, &mut rng, dir.path()).await;
    if result.is_err() {
        let kept = dir.keep();
        eprintln!("logs and state kept in {}", kept.display());
        let dir = kept;
        for log in ["controller.log", "agent.log"] {
            let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!("--- last lines of {log}:");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
    result
}

async fn run_faults(rounds: u32, seed: u64, rng: &mut StdRng, dir: &std::path::Path) -> Result<()> {
    let data = DataDir::new(dir.join("controller"));
    data.init()?;
    let catalog = dir.join("catalog");
    std::fs::create_dir_all(&catalog)?;
    std::fs::write(catalog.join("upload.sh"), UPLOAD_BODY)?;
    std::fs::write(
        catalog.join("upload.toml"),
        "name = \"upload\"\nversion = 1\ndescription = \"prints 0.5 MiB\"\nchanges = \"nothing\"\n\
         tier = \"l1\"\ninterpreter = \"sh\"\nos = \"linux\"\ntimeout_secs = 30\nbody = \"upload.sh\"\n",
    )?;
    script_add(&data, &[catalog.join("upload.toml")])?;
    let addr = deskside_tests::free_udp_addr()?;

    let (data_root, listen) = (data.root().to_path_buf(), addr.clone());
    let mut controller = Proc {
        name: "controller",
        child: None,
        cmd: Box::new(move || {
            let mut c = deskside_tests::serve_command(&data_root, &listen)?;
            c.env("RUST_LOG", "info");
            Ok(c)
        }),
        log: dir.join("controller.log"),
        kills: 0,
    };
    controller.start()?;

    // A technician and an agent, enrolled over the real paths while the controller runs.
    Store::open(&data.database())?.blocking(|db| db.insert_technician("tina", Tier::L1))?;
    let tech_token = make_token(
        &data,
        TokenFor::Technician("tina".into()),
        &addr,
        Duration::from_secs(600),
    )?;
    let profile_path = dir.join("tina.toml");
    let profile = retry(|| login_to(&tech_token, &profile_path)).await?;
    let state = StateDir::new(dir.join("agent"));
    let agent_token = make_token(&data, TokenFor::Agent, &addr, Duration::from_secs(600))?;
    let agent_id = deskside_agent::enroll::enroll(&state, &agent_token)
        .await?
        .agent_id;
    write_atomic(&state.policy(), POLICY.as_bytes(), 0o644)?;
    let (agent_bin, state_root) = (bin("deskside-agent")?, state.root().to_path_buf());
    let mut agent = Proc {
        name: "agent",
        child: None,
        cmd: Box::new(move || {
            let mut c = Command::new(&agent_bin);
            c.arg("--state").arg(&state_root).arg("run");
            // Fast reconnects keep the test short; the backoff maths has its own tests.
            c.env("DESKSIDE_RECONNECT_BASE", "100ms")
                .env("DESKSIDE_RECONNECT_CAP", "1s")
                .env("RUST_LOG", "info");
            Ok(c)
        }),
        log: dir.join("agent.log"),
        kills: 0,
    };
    agent.start()?;
    let client = TechClient::connect(&profile).await?;
    let ticket = match client
        .request(&TechRequest::NewTicket {
            title: "fault injection".into(),
            agent: Some(agent_id.clone()),
            requester: String::new(),
            priority: "normal".into(),
        })
        .await?
    {
        TechReply::Ticket(v) => v.ticket.number,
        other => bail!("ticket not created: {other:?}"),
    };
    deskside_tests::wait_online(&client, &agent_id).await?;
    drop(client);

    let mut outcomes = Outcomes::default();
    let mut max_spooled = 0;
    for round in 0..rounds {
        let mut uploads = tokio::task::JoinSet::new();
        for i in 0..UPLOADS_PER_ROUND {
            let (p, a) = (profile.clone(), agent_id.clone());
            let script = (round as usize + i).is_multiple_of(2);
            uploads.spawn(tokio::time::timeout(
                REQUEST_BOUND,
                upload(p, a, ticket, script),
            ));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1500))).await;
        let victim = rng.gen_range(0..3);
        eprintln!(
            "round {round}: kill -9 {}",
            ["controller", "agent", "both"].get(victim).unwrap_or(&"?")
        );
        if victim != 1 {
            controller.kill9();
        }
        if victim != 0 {
            agent.kill9();
        }
        max_spooled = max_spooled.max(spooled(&state));
        // Restarted at once, the way the service manager does.
        if controller.child.is_none() {
            controller.start()?;
        }
        if agent.child.is_none() {
            agent.start()?;
        }
        while let Some(done) = uploads.join_next().await {
            match done? {
                Err(_) => bail!("round {round}: a request hung for over {REQUEST_BOUND:?}"),
                Ok(Ok(_)) => outcomes.stored += 1,
                Ok(Err(reason)) => {
                    outcomes.failed += 1;
                    *outcomes.reasons.entry(reason).or_default() += 1;
                }
            }
        }
        let client = retry(|| async { Ok(TechClient::connect(&profile).await?) }).await?;
        deskside_tests::wait_online(&client, &agent_id).await?;
    }

    // Everything up: the spool must drain.
    let start = Instant::now();
    while spooled(&state) > 0 {
        if start.elapsed() > SETTLE {
            bail!(
                "{} items still in the agent's spool after {SETTLE:?}",
                spooled(&state)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.stop();
    controller.stop();

    let produced = audited_keys(&state)?;
    let db = stored(&data, &agent_id)?;
    let stored_keys: BTreeSet<String> = db.deliveries.keys().cloned().collect();
    let lost: Vec<_> = produced.difference(&stored_keys).collect();
    let unexpected: Vec<_> = stored_keys.difference(&produced).collect();
    let log = std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default();
    let late = log.matches("late evidence stored").count();
    let again = log.matches("evidence delivered again").count();
    eprintln!(
        "fault injection (seed {seed}): {rounds} rounds, kill -9: controller {} agent {}; \
         requests: {} stored, {} ended with an error {:?}; \
         items produced {}, stored {} (evidence rows {}), delivered late from the spool {late}, \
         redeliveries recorded once {again}, most items spooled at once {max_spooled}; \
         lost {}, unexpected {}",
        controller.kills,
        agent.kills,
        outcomes.stored,
        outcomes.failed,
        outcomes.reasons,
        produced.len(),
        stored_keys.len(),
        db.evidence,
        lost.len(),
        unexpected.len(),
    );
    assert!(lost.is_empty(), "items produced but never stored: {lost:?}");
    assert!(
        unexpected.is_empty(),
        "items stored that the agent never recorded producing: {unexpected:?}"
    );
    assert_eq!(
        db.evidence,
        stored_keys.len(),
        "one evidence record per delivered item"
    );
    assert!(
        outcomes.stored as usize <= produced.len(),
        "every answered request produced an item"
    );
    assert!(!produced.is_empty(), "the run produced nothing to check");
    Ok(())
}

/// Retries `f` while a just-restarted controller is not listening yet.
async fn retry<T, F, Fut>(f: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > Duration::from_secs(30) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
