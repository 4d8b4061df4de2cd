//! Three `deskside serve` processes and three real `deskside-agent run` processes whose
//! tokens list all three nodes: a rolling restart of all three nodes, then `kill -9` of
//! a node — its agents move to the others, within a bound, before it comes back — and of
//! an agent, at random points while diagnostics and script runs (~0.5 MiB of output
//! each) are routed across the nodes. Every request ends with an outcome within a
//! bound; at the end every item an agent produced is stored exactly once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_agent::state::{StateDir, write_atomic};
use deskside_controller::cli::admin::script_add;
use deskside_controller::cli::tech::login_to;
use deskside_controller::datadir::DataDir;
use deskside_controller::profile::Profile;
use deskside_controller::store::{PgUrl, TokenFor};
use deskside_controller::tokens::make_cluster_token;
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{TechReply, TechRequest};
use deskside_tests::nodes::technician_at;
use deskside_tests::postgres_database;
use deskside_tests::routing::{NAMES, Nats, join_data};
use deskside_tests::{audited_keys, spooled};
use deskside_tests::{bin, free_udp_addr, serve_command};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// An agent learns that its node died without a word when the node has sent nothing for
/// `tls::PEER_SILENCE`, then dials another: a node's agents are on the others within a
/// minute of its `kill -9`, or the test fails.
const FAILOVER_BOUND: Duration = Duration::from_secs(60);
/// No request may take longer than this to end one way or the other: a hang fails.
const REQUEST_BOUND: Duration = Duration::from_secs(60);
/// How long the agents get to deliver their spools once everything is up again.
const SETTLE: Duration = Duration::from_secs(90);
const POLICY: &str = "[scopes]\ndiagnostics = \"allow\"\n\"scripts:l1\" = \"allow\"\n";
/// In the list of steps: the node holding an agent, found when the step comes.
const HOLDER: usize = usize::MAX;
const UPLOAD_BODY: &str = "head -c 393216 /dev/urandom | base64\n";

/// A process restarted the way a service manager does.
struct Proc {
    child: Option<Child>,
    cmd: Command,
}

impl Proc {
    fn start(&mut self) -> Result<()> {
        self.child = Some(self.cmd.spawn().context("starting a process")?);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the drain (SIGKILL past the bound).
    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            deskside_tests::terminate(c, Duration::from_secs(30));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn logged(mut cmd: Command, log: &Path) -> Result<Command> {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .env("RUST_LOG", "info");
    Ok(cmd)
}

struct Node {
    data: DataDir,
    addr: String,
    proc: Proc,
}

/// Node `name` on the PostgreSQL database `store`: the first initialises the
/// installation, the others join it.
fn node(
    dir: &Path,
    name: &str,
    first: Option<&DataDir>,
    store: &PgUrl,
    nats: &Nats,
) -> Result<Node> {
    let data = match first {
        None => {
            let data = DataDir::new(dir.join(name)).with_store(Some(store.clone()));
            data.init()?;
            data
        }
        Some(first) => join_data(first, &dir.join(name))?,
    };
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"{}\"\n[cluster]\nnode = \"{name}\"\nnats = \"{}\"\n",
            store.secret_url(),
            nats.url
        ),
    )?;
    let addr = free_udp_addr()?;
    let mut cmd = logged(
        serve_command(data.root(), &addr)?,
        &dir.join(format!("{name}.log")),
    )?;
    cmd.env("DESKSIDE_CONFIG", &config);
    let mut proc = Proc { child: None, cmd };
    proc.start()?;
    Ok(Node { data, addr, proc })
}

struct Machine {
    id: String,
    state: StateDir,
    proc: Proc,
}

async fn machine(dir: &Path, name: &str, data: &DataDir, addrs: &[String]) -> Result<Machine> {
    let state = StateDir::new(dir.join(name));
    let token = make_cluster_token(data, TokenFor::Agent, addrs, Duration::from_secs(600))?;
    let id = retry(|| deskside_agent::enroll::enroll(&state, &token))
        .await?
        .agent_id;
    write_atomic(&state.policy(), POLICY.as_bytes(), 0o644)?;
    let mut cmd = Command::new(bin("deskside-agent")?);
    cmd.arg("--state").arg(state.root()).arg("run");
    // Fast reconnects keep the test short; the backoff maths has its own tests.
    cmd.env("DESKSIDE_RECONNECT_BASE", "100ms")
        .env("DESKSIDE_RECONNECT_CAP", "1s");
    let mut proc = Proc {
        child: None,
        cmd: logged(cmd, &dir.join(format!("{name}.log")))?,
    };
    proc.start()?;
    Ok(Machine { id, state, proc })
}

/// Evidence rows: SHA-256 and how many timeline entries record it.
type Evidence = Vec<(String, i64)>;

/// The delivered keys the shared store holds for `agent`, each item's blob whole and
/// recorded by exactly one timeline entry.
fn stored_keys(data: &DataDir, store: &PgUrl, agent: &str) -> Result<BTreeSet<String>> {
    // The synchronous client runs its own runtime: off this test's.
    let (evidence, keys) = std::thread::scope(|s| {
        s.spawn(|| -> Result<(Evidence, BTreeSet<String>)> {
            let mut db = postgres::Client::connect(store.secret_url(), postgres::NoTls)?;
            let evidence = db
                .query(
                    "SELECT e.sha256, (SELECT COUNT(*) FROM timeline t WHERE t.ticket = e.ticket \
                     AND t.evidence_sha256 = e.sha256) FROM evidence e WHERE e.agent_id = $1",
                    &[&agent],
                )?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect();
            let keys = db
                .query(
                    "SELECT key FROM deliveries WHERE agent_id = $1 AND evidence_sha256 IS NOT NULL",
                    &[&agent],
                )?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            Ok((evidence, keys))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the database reader panicked"))?
    })?;
    for (sha, entries) in &evidence {
        if *entries != 1 {
            bail!("evidence {sha} has {entries} timeline entries (doubled or orphaned)");
        }
        let blob = data
            .evidence()
            .join(sha.get(..2).unwrap_or_default())
            .join(sha);
        let bytes = std::fs::read(&blob).with_context(|| format!("reading {}", blob.display()))?;
        if hex::encode(Sha256::digest(&bytes)) != *sha {
            bail!("blob {} does not hash to its name", blob.display());
        }
    }
    if keys.len() != evidence.len() {
        bail!(
            "{} deliveries but {} evidence records for {agent}",
            keys.len(),
            evidence.len()
        );
    }
    Ok(keys)
}

/// One routed upload through a fresh connection to the node at `at`.
async fn upload(
    profile: Profile,
    at: String,
    agent: String,
    ticket: u64,
    script: bool,
) -> Result<(), String> {
    let client = technician_at(&profile, &at)
        .await
        .map_err(|e| format!("connect: {e:#}"))?;
    let reply = if script {
        let req = TechRequest::RunScript {
            agent,
            ticket,
            script: "upload".into(),
            params: Vec::new(),
        };
        client.stream(&req, |_| {}).await
    } else {
        client
            .request(&TechRequest::Diagnostics { agent, ticket })
            .await
    };
    match reply {
        Ok(TechReply::Diagnostics(_) | TechReply::RunFinished(_)) => Ok(()),
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        Err(e) => Err(format!("{:#}", anyhow::Error::from(e))),
    }
}

async fn retry<T, E: Into<anyhow::Error>, Fut: Future<Output = Result<T, E>>>(
    f: impl Fn() -> Fut,
) -> Result<T> {
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() > Duration::from_secs(30) => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Every agent is online as the node at `addr` sees it (it may be restarting), within
/// `bound`.
async fn all_online(profile: &Profile, addr: &str, machines: &[Machine]) -> Result<()> {
    online_within(profile, addr, machines, REQUEST_BOUND).await
}

/// The node agent `id` is connected to, once it is connected somewhere (it may be
/// between two connections).
async fn located(data: &DataDir, id: &str) -> Result<deskside_controller::store::AgentLocation> {
    let store = data.open_store()?;
    let start = Instant::now();
    loop {
        let agent = id.to_owned();
        if let Some(at) = store.run(move |db| db.agent_location(&agent)).await? {
            return Ok(at);
        }
        if start.elapsed() > REQUEST_BOUND {
            bail!("agent {id} is connected nowhere after {REQUEST_BOUND:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until no agent's connection is recorded on node `node` (each is on another).
async fn moved_off(
    data: &DataDir,
    machines: &[Machine],
    node: &str,
    bound: Duration,
) -> Result<()> {
    let store = data.open_store()?;
    let start = Instant::now();
    loop {
        let mut left = 0;
        for m in machines {
            let id = m.id.clone();
            let at = store.run(move |db| db.agent_location(&id)).await?;
            if at.is_none_or(|a| a.node == node) {
                left += 1;
            }
        }
        if left == 0 {
            return Ok(());
        }
        if start.elapsed() > bound {
            bail!("{left} agent(s) still not on another node than {node} after {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn online_within(
    profile: &Profile,
    addr: &str,
    machines: &[Machine],
    bound: Duration,
) -> Result<()> {
    let start = Instant::now();
    let client = retry(|| technician_at(profile, addr)).await?;
    loop {
        if let TechReply::Agents(list) = client.request(&TechRequest::ListAgents).await?
            && machines
                .iter()
                .all(|m| list.iter().any(|a| a.id == m.id && a.online))
        {
            return Ok(());
        }
        if start.elapsed() > bound {
            bail!("not every agent was online on the node at {addr} within {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_and_kill_9_across_nodes_lose_and_double_nothing() -> Result<()> {
    let seed: u64 = std::env::var("DESKSIDE_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    eprintln!("cluster faults: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let nats = Nats::shared()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let result = run(&mut rng, &nats, dir).await;
    if result.is_err() {
        let kept = scratch.keep();
        eprintln!("logs and state kept in {}", kept.display());
    }
    result
}

async fn run(rng: &mut StdRng, nats: &Nats, dir: &Path) -> Result<()> {
    let store = postgres_database()?;
    let mut nodes: Vec<Node> = Vec::new();
    for name in NAMES {
        let first = nodes.first().map(|n| n.data.clone());
        nodes.push(node(dir, name, first.as_ref(), &store, nats)?);
    }
    let data = nodes.first().map(|n| n.data.clone()).context("node a")?;
    let catalog: PathBuf = dir.join("catalog");
    std::fs::create_dir_all(&catalog)?;
    std::fs::write(catalog.join("upload.sh"), UPLOAD_BODY)?;
    std::fs::write(
        catalog.join("upload.toml"),
        "name = \"upload\"\nversion = 1\ndescription = \"prints 0.5 MiB\"\nchanges = \"nothing\"\n\
         tier = \"l1\"\ninterpreter = \"sh\"\nos = \"linux\"\ntimeout_secs = 30\nbody = \"upload.sh\"\n",
    )?;
    script_add(&data, &[catalog.join("upload.toml")])?;
    data.open_store()?
        .run(|db| db.insert_technician("tina", Tier::L1))
        .await?;
    // Tokens list every node: the agents pick one at random and fail over; the
    // technician's profile names them all too, and the test picks which node it asks.
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let tech = TokenFor::Technician("tina".into());
    let token = make_cluster_token(&data, tech, &addrs, Duration::from_secs(600))?;
    let profile_path = dir.join("tina.toml");
    let profile = retry(|| login_to(&token, &profile_path)).await?;
    let mut machines = Vec::new();
    for i in 0..NAMES.len() {
        machines.push(machine(dir, &format!("pc-{i}"), &data, &addrs).await?);
    }
    let a_addr = addrs.first().context("node a")?.clone();
    all_online(&profile, &a_addr, &machines).await?;
    let client = technician_at(&profile, &a_addr).await?;
    let mut tickets = Vec::new();
    for m in &machines {
        tickets.push(deskside_tests::hostile::new_ticket(&client, &m.id).await?);
    }
    drop(client);

    let (mut answered, mut failed) = (0u32, Vec::new());
    // A rolling restart, one node at a time, while routed requests run; then kill -9 of
    // the node holding an agent, then of an agent (an index past the nodes).
    let steps: Vec<(usize, bool)> = (0..NAMES.len())
        .map(|i| (i, false))
        .chain([(HOLDER, true), (NAMES.len(), true)])
        .collect();
    for (round, (victim, kill)) in steps.into_iter().enumerate() {
        // The node holding a randomly chosen agent, so the kill moves at least one.
        let victim = if victim == HOLDER {
            let chosen = machines
                .get(rng.gen_range(0..machines.len()))
                .context("an agent")?
                .id
                .clone();
            let at = located(&data, &chosen).await?;
            NAMES
                .iter()
                .position(|n| *n == at.node)
                .context("an unknown node")?
        } else {
            victim
        };
        // The technician asks a node that stays up this step.
        let asked = addrs
            .get((victim + 1) % NAMES.len())
            .context("a node to ask")?
            .clone();
        let mut uploads = tokio::task::JoinSet::new();
        for (i, (m, t)) in machines.iter().zip(&tickets).enumerate() {
            let (p, a, t, at) = (profile.clone(), m.id.clone(), *t, asked.clone());
            let script = (round + i) % 2 == 0;
            uploads.spawn(tokio::time::timeout(
                REQUEST_BOUND,
                upload(p, at, a, t, script),
            ));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1500))).await;
        match (nodes.get_mut(victim), kill) {
            (Some(n), false) => {
                eprintln!(
                    "step {round}: restart {}",
                    NAMES.get(victim).unwrap_or(&"?")
                );
                n.proc.stop();
                n.proc.start()?;
            }
            (Some(n), true) => {
                eprintln!(
                    "step {round}: kill -9 {}",
                    NAMES.get(victim).unwrap_or(&"?")
                );
                n.proc.kill9();
                // Its agents move to the other nodes before it comes back.
                let killed = Instant::now();
                let name = NAMES.get(victim).context("a node name")?;
                moved_off(&data, &machines, name, FAILOVER_BOUND).await?;
                online_within(&profile, &asked, &machines, REQUEST_BOUND).await?;
                eprintln!(
                    "step {round}: every agent online on the other nodes {:?} after the kill",
                    killed.elapsed()
                );
                n.proc.start()?;
            }
            (None, _) => {
                eprintln!("step {round}: kill -9 an agent");
                let m = machines.last_mut().context("an agent")?;
                m.proc.kill9();
                m.proc.start()?;
            }
        }
        while let Some(done) = uploads.join_next().await {
            match done? {
                Err(_) => bail!("step {round}: a request hung for over {REQUEST_BOUND:?}"),
                Ok(Ok(())) => answered += 1,
                Ok(Err(reason)) => failed.push(reason),
            }
        }
        all_online(&profile, &asked, &machines).await?;
    }

    // Everything up: the spools drain, to whichever node each agent is on.
    let start = Instant::now();
    while machines.iter().any(|m| spooled(&m.state) > 0) {
        if start.elapsed() > SETTLE {
            bail!("items still spooled after {SETTLE:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut produced_all = 0;
    for m in &mut machines {
        m.proc.stop();
        let produced = audited_keys(&m.state)?;
        let stored = stored_keys(&data, &store, &m.id)?;
        let lost: Vec<_> = produced.difference(&stored).collect();
        let unexpected: Vec<_> = stored.difference(&produced).collect();
        assert!(
            lost.is_empty(),
            "{}: items produced but never stored: {lost:?}",
            m.id
        );
        assert!(
            unexpected.is_empty(),
            "{}: items stored never produced: {unexpected:?}",
            m.id
        );
        produced_all += produced.len();
    }
    for n in &mut nodes {
        n.proc.stop();
    }
    eprintln!(
        "cluster faults: {answered} routed requests answered, {} ended with an error {failed:?}; {produced_all} items produced, all stored once",
        failed.len()
    );
    assert!(
        answered as usize <= produced_all,
        "every answered request produced an item"
    );
    assert!(produced_all > 0, "the run produced nothing to check");
    Ok(())
}
