//! Private instances of the daemons the catalog scripts act on (CUPS, dnsmasq,
//! chronyd), so their success paths run for real in CI, where PID 1 is not systemd and
//! package installs start no service. Each runs in the foreground from a temp dir,
//! touches no system config, and is stopped (SIGTERM, then SIGKILL) on drop. Not
//! installed → an error saying which package `.ci/test` installs, never a skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A daemon starts in well under a second; a busy 2-core machine gets plenty more.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running private daemon.
#[derive(Debug)]
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    name: &'static str,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn log_tail(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&Path) -> bool) -> Result<()> {
        let started = Instant::now();
        loop {
            if ready(self.dir.path()) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited ({status}) before {what}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "{} not {what} within {READY_TIMEOUT:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The error when `program` is missing: which package provides it.
fn require(program: &str, package: &str) -> Result<()> {
    if Path::new(program).exists() {
        return Ok(());
    }
    bail!(
        "{program} is missing, and this test runs the script against a real one: install it as \
         root with `apt-get install --no-install-recommends {package}` (.ci/test does), then rerun"
    )
}

fn spawn(
    name: &'static str,
    program: &str,
    args: &[String],
    dir: tempfile::TempDir,
) -> Result<Daemon> {
    let log = std::fs::File::create(dir.path().join("daemon.log"))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    Ok(Daemon {
        dir,
        child: Some(child),
        name,
    })
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// A private CUPS scheduler listening only on `<dir>/cups.sock` (point clients at it
/// with `CUPS_SERVER`), with an empty set of printers.
pub fn cups() -> Result<Daemon> {
    require("/usr/sbin/cupsd", "cups")?;
    require("/usr/bin/lpstat", "cups-client")?;
    let dir = tempfile::Builder::new()
        .prefix("deskside-cups-")
        .tempdir()?;
    let d = dir.path();
    for sub in ["spool/tmp", "cache", "state/certs", "log", "ppd"] {
        std::fs::create_dir_all(d.join(sub))?;
    }
    std::fs::write(
        d.join("cupsd.conf"),
        format!(
            "Listen {sock}\nLogLevel warn\n\
             <Location />\n  Order allow,deny\n  Allow all\n</Location>\n\
             <Location /admin>\n  Order allow,deny\n  Allow all\n</Location>\n\
             <Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n",
            sock = path(d, "cups.sock")
        ),
    )?;
    std::fs::write(
        d.join("cups-files.conf"),
        format!(
            "ServerRoot {root}\nRequestRoot {spool}\nTempDir {tmp}\nCacheDir {cache}\n\
             StateDir {state}\nAccessLog {log}/access_log\nErrorLog {log}/error_log\n\
             PageLog {log}/page_log\nServerBin /usr/lib/cups\nDataDir /usr/share/cups\n",
            root = d.display(),
            spool = path(d, "spool"),
            tmp = path(d, "spool/tmp"),
            cache = path(d, "cache"),
            state = path(d, "state"),
            log = path(d, "log"),
        ),
    )?;
    let args = [
        "-f".to_owned(),
        "-c".to_owned(),
        path(d, "cupsd.conf"),
        "-s".to_owned(),
        path(d, "cups-files.conf"),
    ];
    let mut daemon = spawn("cupsd", "/usr/sbin/cupsd", &args, dir)?;
    daemon.wait_until("answering lpstat -r", |d| {
        cups_tool(d, "lpstat", &["-r"]).is_ok_and(|out| out.contains("is running"))
    })?;
    Ok(daemon)
}

/// `CUPS_SERVER` for the private scheduler in `dir`.
pub fn cups_server(dir: &Path) -> PathBuf {
    dir.join("cups.sock")
}

/// Runs a CUPS client tool (`lpadmin`, `lp`, `lpstat`, `cupsdisable`) against the
/// private scheduler in `dir`; its stdout, or an error with its stderr.
pub fn cups_tool(dir: &Path, tool: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(tool)
        .args(args)
        .env("CUPS_SERVER", cups_server(dir))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A dnsmasq that serves nothing (`--port=0`), only there to be found and signalled.
pub fn dnsmasq() -> Result<Daemon> {
    require("/usr/sbin/dnsmasq", "dnsmasq")?;
    let dir = tempfile::Builder::new()
        .prefix("deskside-dnsmasq-")
        .tempdir()?;
    let pid_file = path(dir.path(), "dnsmasq.pid");
    let args = [
        "--keep-in-foreground".to_owned(),
        "--port=0".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        format!("--pid-file={pid_file}"),
    ];
    let mut daemon = spawn("dnsmasq", "/usr/sbin/dnsmasq", &args, dir)?;
    daemon.wait_until("writing its pid file", |d| d.join("dnsmasq.pid").exists())?;
    Ok(daemon)
}

/// A chronyd that never touches the system clock (`-x`), with no NTP server and its
/// command socket in its own dir.
pub fn chronyd() -> Result<Daemon> {
    require("/usr/sbin/chronyd", "chrony")?;
    let dir = tempfile::Builder::new()
        .prefix("deskside-chrony-")
        .tempdir()?;
    let d = dir.path();
    std::fs::write(
        d.join("chrony.conf"),
        format!(
            "pidfile {}\nbindcmdaddress {}\ncmdport 0\n",
            path(d, "chronyd.pid"),
            path(d, "chronyd.sock")
        ),
    )?;
    let args = [
        "-d".to_owned(),
        "-x".to_owned(),
        "-u".to_owned(),
        "root".to_owned(),
        "-f".to_owned(),
        path(d, "chrony.conf"),
    ];
    let mut daemon = spawn("chronyd", "/usr/sbin/chronyd", &args, dir)?;
    daemon.wait_until("writing its pid file", |d| d.join("chronyd.pid").exists())?;
    Ok(daemon)
}
