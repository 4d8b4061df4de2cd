//! A real Request Tracker 5 for the adapter tests: Debian's packages, initialised on
//! SQLite in a temp dir and served by `rt-server` on 127.0.0.1 (see
//! shared/notes/request-tracker.md). Not installed → an error saying how to install it
//! (`.ci/install-rt.sh`); CI installs it, so a missing RT fails loudly, never skips.
//! Also the sample evidence bundle the RT and webhook tests push.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use deskside_controller::adapters::config::{DEFAULT_TIMEOUT, RtConfig, Secret, TierQueues};
use deskside_controller::adapters::http::MAX_RESPONSE_BYTES;
use deskside_controller::adapters::rt::RtClient;
use deskside_controller::bundle::{
    BUNDLE_FORMAT, Bundle, BundleItem, EVIDENCE_JSON, Escalation, ITEMS_DIR, REPORT_HTML, REPORT_MD,
};
use deskside_controller::evidence::{BlobStore, DirBlobs};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{Sla, TicketSummary};
use serde_json::Value;

pub const RT_SERVER: &str = "/usr/share/request-tracker5/libexec/rt-server";
pub const RT_SETUP_DATABASE: &str = "/usr/sbin/rt-setup-database-5";

/// RT's superuser in the test instance.
pub const RT_USER: &str = "root";

/// The queue per tier (names with spaces exercise URL encoding).
pub const QUEUES: [(Tier, &str); 3] = [
    (Tier::L1, "Deskside L1"),
    (Tier::L2, "Deskside L2"),
    (Tier::L3, "Deskside L3"),
];

/// rt-server is ready in ~2 s on a quiet machine; parallel test builds slow it down.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// An attachment's JSON (base64 content) in the tests stays well under this.
const MAX_ATTACHMENT_JSON: u64 = 64 * 1024 * 1024;

/// An attachment as RT stores it.
#[derive(Debug, Clone)]
pub struct RtAttachment {
    pub id: String,
    pub transaction_id: String,
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

/// A running RT instance; stopped (SIGTERM by PID) and deleted on drop.
#[derive(Debug)]
pub struct RtServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    password: String,
    child: Option<Child>,
}

/// The error when RT is not installed: how to install it.
pub fn require_rt() -> Result<()> {
    if Path::new(RT_SERVER).exists() && Path::new(RT_SETUP_DATABASE).exists() {
        return Ok(());
    }
    bail!(
        "Request Tracker 5 is not installed ({RT_SERVER} is missing), and the RT adapter tests \
         run against a real one. Install it as root with `.ci/install-rt.sh` (Debian packages \
         request-tracker5, rt5-db-sqlite, rt5-standalone; CI runs it), then rerun the tests."
    )
}

/// A controller origin of its own for each test: the tests share one RT, and the
/// adapter finds an unlinked ticket's RT ticket by a marker that holds the origin.
pub fn test_origin() -> String {
    format!("test{:016x}", rand::random::<u64>())
}

/// A sync id no other job in this process has (the outbox uses its job id).
pub fn next_sync_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl RtServer {
    /// One instance shared by the tests running at the same time in this process; the
    /// last one to drop its handle stops it.
    pub fn shared() -> Result<Arc<RtServer>> {
        static SHARED: Mutex<Weak<RtServer>> = Mutex::new(Weak::new());
        let mut slot = SHARED
            .lock()
            .map_err(|_| anyhow!("a test panicked while starting RT"))?;
        if let Some(running) = slot.upgrade() {
            return Ok(running);
        }
        let server = Arc::new(RtServer::start()?);
        *slot = Arc::downgrade(&server);
        Ok(server)
    }

    /// Initialises a fresh RT in a temp dir, serves it on a free loopback port and
    /// creates the tier queues.
    pub fn start() -> Result<RtServer> {
        require_rt()?;
        let dir = tempfile::Builder::new().prefix("deskside-rt-").tempdir()?;
        let root = dir.path();
        for sub in ["var", "mason", "session", "site-config.d"] {
            fs::create_dir_all(root.join(sub))?;
        }
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let password = "deskside-rt-test".to_owned();
        let perl = |p: PathBuf| {
            p.display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        };
        let site = format!(
            "Set($rtname, 'deskside-test');\n\
             Set($Organization, 'deskside.test');\n\
             Set($DatabaseType, 'SQLite');\n\
             Set($DatabaseName, '{db}');\n\
             Set($WebDomain, '127.0.0.1');\n\
             Set($WebPort, {port});\n\
             Set($WebPath, '');\n\
             Set($WebBaseURL, '{url}');\n\
             Set($BcryptCost, 4);\n\
             Set($MailCommand, 'mbox');\n\
             Set($VarPath, '{var}');\n\
             Set($MasonDataDir, '{mason}');\n\
             Set($MasonSessionDir, '{session}');\n\
             Set($LogToSTDERR, 'warning');\n\
             1;\n",
            db = perl(root.join("rt.db")),
            var = perl(root.join("var")),
            mason = perl(root.join("mason")),
            session = perl(root.join("session")),
        );
        fs::write(root.join("RT_SiteConfig.pm"), site)?;
        fs::write(root.join("root-password"), format!("{password}\n"))?;

        let setup_started = Instant::now();
        let out = rt_command(root, RT_SETUP_DATABASE)
            .args(["--action", "init", "--skip-create", "--root-password-file"])
            .arg(root.join("root-password"))
            .stdin(Stdio::null())
            .output()
            .context("running rt-setup-database-5")?;
        if !out.status.success() {
            bail!(
                "rt-setup-database-5 --action init failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!(
            "rt: database initialised in {:.1}s",
            setup_started.elapsed().as_secs_f64()
        );

        let log = fs::File::create(root.join("rt-server.log"))?;
        let child = rt_command(root, RT_SERVER)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--max-workers", "4"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting rt-server")?;
        let mut server = RtServer {
            dir,
            port,
            url,
            password,
            child: Some(child),
        };
        let serve_started = Instant::now();
        server.wait_ready()?;
        eprintln!(
            "rt: serving {} after {:.1}s",
            server.url,
            serve_started.elapsed().as_secs_f64()
        );
        for (_, queue) in QUEUES {
            server.ensure_queue(queue)?;
        }
        Ok(server)
    }

    /// The adapter config for this instance.
    pub fn config(&self) -> RtConfig {
        self.config_at(&self.url)
    }

    /// The same credentials and queues, pointed at `url` (e.g. a closed port).
    pub fn config_at(&self, url: &str) -> RtConfig {
        RtConfig {
            url: url.to_owned(),
            user: RT_USER.to_owned(),
            password: Secret::new(self.password.clone()),
            queues: TierQueues {
                l1: queue_name(Tier::L1).to_owned(),
                l2: queue_name(Tier::L2).to_owned(),
                l3: queue_name(Tier::L3).to_owned(),
            },
            timeout: DEFAULT_TIMEOUT,
            insecure_http: false,
        }
    }

    pub fn client(&self) -> RtClient {
        RtClient::new(&self.config())
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("rt-server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(30);
        lines.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let client = self.client();
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "rt-server exited ({status}) before answering:\n{}",
                    self.log_tail()
                );
            }
            match client.get("/rt", MAX_RESPONSE_BYTES) {
                Ok(reply) if reply.status == 200 => return Ok(()),
                Ok(reply) if reply.status == 401 => {
                    bail!("RT refused the test credentials:\n{}", self.log_tail())
                }
                _ => {}
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "rt-server did not answer on {} within {READY_TIMEOUT:?}:\n{}",
                    self.url,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates the queue unless RT has it (`GET /queue/NAME` 404 → `POST /queue`).
    pub fn ensure_queue(&self, name: &str) -> Result<String> {
        let client = self.client();
        if let Some(q) = client.queue(name)? {
            return Ok(q.id);
        }
        Ok(client.create_queue(name)?.id)
    }

    /// The id of a queue that exists.
    pub fn queue_id(&self, name: &str) -> Result<String> {
        Ok(self
            .client()
            .queue(name)?
            .ok_or_else(|| anyhow!("RT has no queue {name:?}"))?
            .id)
    }

    /// Every attachment of a ticket that has a file name, with its bytes as RT returns
    /// them (`GET /attachment/:id`, base64).
    pub fn attachments(&self, ticket: u64) -> Result<Vec<RtAttachment>> {
        let client = self.client();
        let list = client.get_json(
            &format!("/ticket/{ticket}/attachments?per_page=100&fields=Filename"),
            MAX_RESPONSE_BYTES,
        )?;
        if field(&list, "pages").as_u64().unwrap_or(1) > 1 {
            bail!("ticket {ticket} has more than 100 attachments; page through them");
        }
        let mut out = Vec::new();
        for item in items(&list) {
            if text(item, "Filename").is_empty() {
                continue; // message body parts
            }
            let id = json_id(field(item, "id"))?;
            let a = client.get_json(&format!("/attachment/{id}"), MAX_ATTACHMENT_JSON)?;
            out.push(RtAttachment {
                transaction_id: json_id(field(field(&a, "TransactionId"), "id"))?,
                filename: text(&a, "Filename").to_owned(),
                content_type: text(&a, "ContentType").to_owned(),
                content: base64_decode(text(&a, "Content"))?,
                id,
            });
        }
        Ok(out)
    }

    /// The text of every unnamed `text/plain` part (message bodies) of a ticket.
    pub fn bodies(&self, ticket: u64) -> Result<Vec<String>> {
        let client = self.client();
        let list = client.get_json(
            &format!("/ticket/{ticket}/attachments?per_page=100&fields=Filename,ContentType"),
            MAX_RESPONSE_BYTES,
        )?;
        let mut out = Vec::new();
        for item in items(&list) {
            if !text(item, "Filename").is_empty() || text(item, "ContentType") != "text/plain" {
                continue;
            }
            let id = json_id(field(item, "id"))?;
            let a = client.get_json(&format!("/attachment/{id}"), MAX_ATTACHMENT_JSON)?;
            let bytes = base64_decode(text(&a, "Content"))?;
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(out)
    }

    /// Stops rt-server: SIGTERM by PID (SIGINT as root would chown RT's system dir),
    /// then SIGKILL if it has not exited within 15 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for RtServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An RT command isolated to the instance in `root`: without both variables RT reads
/// the system's /etc/request-tracker5/RT_SiteConfig.d.
fn rt_command(root: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("RT_SITE_CONFIG", root.join("RT_SiteConfig.pm"))
        .env("RT_SITE_CONFIG_DIR", root.join("site-config.d"))
        .env("TMPDIR", root);
    cmd
}

/// The tier's queue in [`QUEUES`].
pub fn queue_name(tier: Tier) -> &'static str {
    QUEUES
        .iter()
        .find(|(t, _)| *t == tier)
        .map_or("", |(_, name)| name)
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    field(v, key).as_str().unwrap_or_default()
}

fn items(list: &Value) -> &[Value] {
    field(list, "items").as_array().map_or(&[], Vec::as_slice)
}

/// RT writes ids as strings; accept numbers too.
fn json_id(v: &Value) -> Result<String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => bail!("expected an RT id, got {other}"),
    }
}

/// Standard base64 with padding; RT wraps it at 76 columns, so whitespace is skipped.
/// Written out here so the check does not share code with what it checks.
pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut padding = 0usize;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => bail!("not base64: byte {c:#04x}"),
        };
        if padding > 0 {
            bail!("base64 data after padding");
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or_default());
        }
    }
    if padding > 2 {
        bail!("too much base64 padding");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_wrapped_text() -> Result<()> {
        assert_eq!(base64_decode("Y2Fm6SD//g==\n")?, b"caf\xe9 \xff\xfe");
        assert_eq!(base64_decode("aGVs\nbG8=")?, b"hello");
        assert_eq!(base64_decode("")?, b"");
        assert!(base64_decode("a$").is_err());
        Ok(())
    }
}

/// An evidence bundle written the way escalation lays it out, for the adapter tests.
#[derive(Debug, Clone)]
pub struct SampleBundle {
    pub dir: PathBuf,
    pub bundle: Bundle,
    pub report_md: String,
    /// Every file an adapter must attach: name outside → bytes.
    pub files: Vec<(String, Vec<u8>)>,
}

/// A Deskside ticket as the store shows it.
pub fn sample_ticket(number: u64, title: &str) -> TicketSummary {
    TicketSummary {
        number,
        title: title.to_owned(),
        status: "escalated".into(),
        tier: Tier::L1,
        priority: "high".into(),
        requester: "Pat Doe".into(),
        owner: Some("alice".into()),
        agent: Some("ag-1".into()),
        created_by: "alice".into(),
        created_at_secs: 1_700_000_000,
        first_response_at_secs: Some(1_700_000_060),
        resolved_at_secs: None,
        evidence_count: 4,
        sla: Sla::default(),
        external_ref: None,
        sync_state: None,
    }
}

/// Writes `evidence.json`, `items/<sha256>` (binary bytes 0x00..=0xff, non-UTF-8 text,
/// JSON, and 300 KiB of noise), `report.md` and `report.html` under `dir`.
pub fn write_sample_bundle(dir: &Path, ticket: &TicketSummary) -> Result<SampleBundle> {
    let items_dir = dir.join(ITEMS_DIR);
    fs::create_dir_all(&items_dir)?;
    let mut noise = Vec::with_capacity(300 * 1024);
    let mut x: u32 = 0x1234_5678;
    while noise.len() < 300 * 1024 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        noise.extend_from_slice(&x.to_be_bytes());
    }
    let contents: Vec<(&str, Vec<u8>)> = vec![
        ("script_run", (0..=255u8).collect()),
        (
            "script_run",
            b"caf\xe9 cr\xe8me\r\n\xff\xfe\x00 end \x80\n".to_vec(),
        ),
        (
            "snapshot",
            "{\"hostname\":\"pc-042\",\"note\":\"Gr\u{fc}\u{df}e \u{2713}\"}\n"
                .as_bytes()
                .to_vec(),
        ),
        ("snapshot", noise),
    ];
    // The project's own content addressing names the files.
    let hasher = DirBlobs::new(dir.join(".hash-scratch"));
    let mut items = Vec::new();
    let mut files = Vec::new();
    for (kind, bytes) in contents {
        let sha256 = hasher.put(&bytes)?;
        fs::write(items_dir.join(&sha256), &bytes)?;
        items.push(BundleItem {
            sha256: sha256.clone(),
            kind: kind.to_owned(),
            size_bytes: u64::try_from(bytes.len())?,
            agent: Some("ag-1".into()),
            created_at_secs: 1_700_000_100,
            signer: deskside_controller::bundle::Signer::of_kind(kind),
            signature: None,
            redaction: Vec::new(),
        });
        files.push((sha256, bytes));
    }
    fs::remove_dir_all(dir.join(".hash-scratch"))?;
    files.sort();

    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        generated_at_secs: 1_700_000_200,
        generator: "deskside tests".into(),
        ticket: ticket.clone(),
        escalation: Some(Escalation {
            from: Tier::L1,
            to: Tier::L2,
            note: "printer spooler keeps crashing".into(),
            by: "alice".into(),
            at_secs: 1_700_000_150,
        }),
        timeline: Vec::new(),
        items,
        agents: Vec::new(),
        ca_pem: String::new(),
        controller_cert_pem: String::new(),
    };
    let evidence = serde_json::to_vec_pretty(&bundle)?;
    fs::write(dir.join(EVIDENCE_JSON), &evidence)?;
    let report_md = format!(
        "# Deskside ticket #{} \u{2014} {}\n\nRequester: Pat Doe. Gr\u{fc}\u{df}e from L1.\n\n\
         ## Evidence\n\n{}\n",
        ticket.number,
        ticket.title,
        bundle
            .items
            .iter()
            .map(|i| format!("- {} `{}` ({} bytes)", i.kind, i.sha256, i.size_bytes))
            .collect::<Vec<_>>()
            .join("\n")
    );
    fs::write(dir.join(REPORT_MD), &report_md)?;
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>#{n}</title><h1>Ticket #{n} \u{2014} \
         Gr\u{fc}\u{df}e</h1>\n",
        n = ticket.number
    );
    fs::write(dir.join(REPORT_HTML), &html)?;
    files.push((EVIDENCE_JSON.to_owned(), evidence));
    files.push((REPORT_HTML.to_owned(), html.into_bytes()));
    Ok(SampleBundle {
        dir: dir.to_owned(),
        bundle,
        report_md,
        files,
    })
}
