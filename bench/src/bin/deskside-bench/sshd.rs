//! A private OpenSSH server for the baselines: started by the benchmark on a free
//! 127.0.0.1 port with its own host key, key-only auth with its own client key, no PAM,
//! logging into a dedicated user whose login shell is /bin/sh with an empty home — so no
//! shell start-up file (a `.bashrc` running `pyenv init`, say) is counted against ssh.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The ssh login the benchmark uses (created by bench/setup.sh, or here when root).
pub const USER: &str = "deskside-bench";
/// Its home: empty, so nothing runs at login.
const HOME: &str = "/var/lib/deskside-bench";
/// sshd starts in a few ms; a busy 2-core machine may take a second.
const READY_WITHIN: Duration = Duration::from_secs(10);
const SSHD: &str = "/usr/sbin/sshd";

/// A running private sshd and the client options that reach it.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

/// Is this process root? (Starting sshd for another user needs it.)
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

impl Sshd {
    pub fn start() -> Result<Sshd> {
        if !Path::new(SSHD).exists() || which("ssh").is_none() {
            bail!("skipped: OpenSSH not installed (run bench/setup.sh)");
        }
        if !is_root() {
            bail!("skipped: a private sshd logging into {USER} needs root");
        }
        ensure_user()?;
        // Privilege separation directory, absent when no system sshd ever ran.
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        let dir = tempfile::Builder::new()
            .prefix("deskside-bench-ssh-")
            .tempdir()?;
        // The login reads authorized_keys and the scp source with its own uid.
        set_mode(dir.path(), 0o755)?;
        let p = |n: &str| dir.path().join(n);
        keygen(&p("host_ed25519"))?;
        keygen(&p("client_ed25519"))?;
        std::fs::copy(p("client_ed25519.pub"), p("authorized_keys"))?;
        set_mode(&p("authorized_keys"), 0o644)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowUsers {USER}\n\
             PermitRootLogin no\nPrintMotd no\nPrintLastLog no\nSubsystem sftp internal-sftp\n",
            host = p("host_ed25519").display(),
            pid = p("sshd.pid").display(),
            keys = p("authorized_keys").display(),
        );
        std::fs::write(p("sshd_config"), config)?;
        let host_pub = std::fs::read_to_string(p("host_ed25519.pub"))?;
        let mut fields = host_pub.split_whitespace();
        let (Some(kind), Some(key)) = (fields.next(), fields.next()) else {
            bail!("ssh-keygen wrote an unexpected public key: {host_pub}");
        };
        std::fs::write(
            p("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )?;
        let log = std::fs::File::create(p("sshd.log"))?;
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(p("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting sshd")?;
        let sshd = Sshd { dir, port, child };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > READY_WITHIN {
                let log = std::fs::read_to_string(sshd.path("sshd.log")).unwrap_or_default();
                bail!("sshd did not listen within {READY_WITHIN:?}: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Proves the login works before anything is timed.
        let out = sshd.ssh().arg("true").output()?;
        if !out.status.success() {
            bail!(
                "ssh login to {USER} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(sshd)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A directory the login can read (for the scp source file).
    pub fn shared_dir(&self) -> &Path {
        self.dir.path()
    }

    fn client_options(&self, cmd: &mut Command) {
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(self.path("client_ed25519"))
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.path("known_hosts").display()
            ))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"]);
    }

    /// `ssh USER@127.0.0.1 -p PORT` with a fresh connection each time.
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        self.client_options(&mut cmd);
        cmd.args(["-p", &self.port.to_string()])
            .arg(format!("{USER}@127.0.0.1"));
        cmd
    }

    /// The same through a ControlMaster that stays open for 60 s.
    pub fn ssh_mux(&self) -> Command {
        let mut cmd = Command::new("ssh");
        self.client_options(&mut cmd);
        cmd.args(["-o", "ControlMaster=auto", "-o", "ControlPersist=60"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.path("cm.sock").display()))
            .args(["-p", &self.port.to_string()])
            .arg(format!("{USER}@127.0.0.1"));
        cmd
    }

    /// Key exchange, host key and cipher the client actually negotiated (`ssh -v`).
    pub fn negotiated(&self) -> Result<String> {
        let out = self.ssh().args(["-v", "true"]).output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        let pick = |prefix: &str| {
            log.lines()
                .find_map(|l| l.split_once(prefix).map(|(_, v)| v.trim().to_owned()))
        };
        let kex = pick("kex: algorithm:").context("ssh -v printed no kex algorithm")?;
        let host = pick("kex: host key algorithm:").unwrap_or_default();
        let cipher = pick("kex: server->client cipher:").unwrap_or_default();
        Ok(format!("kex {kex}, host key {host}, cipher {cipher}"))
    }

    /// `scp -c CIPHER USER@127.0.0.1:REMOTE LOCAL`.
    pub fn scp_from(&self, cipher: &str, remote: &Path, local: &Path) -> Result<()> {
        let mut cmd = Command::new("scp");
        self.client_options(&mut cmd);
        let out = cmd
            .args(["-q", "-c", cipher, "-P", &self.port.to_string()])
            .arg(format!("{USER}@127.0.0.1:{}", remote.display()))
            .arg(local)
            .output()?;
        check(&out, "scp")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.ssh_mux().args(["-O", "exit"]).output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails with the command's stderr when it did not exit 0.
pub fn check(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The full path of `name` on PATH, if installed.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Creates the login if missing. Its password is `*` (no password can match, and unlike
/// useradd's default `!` the account is not "locked", which sshd refuses without PAM).
fn ensure_user() -> Result<()> {
    if !Command::new("id").arg(USER).output()?.status.success() {
        let out = Command::new("useradd")
            .args(["--system", "--shell", "/bin/sh", "--home-dir", HOME])
            .args(["--create-home", "--skel", "/dev/null", USER])
            .output()?;
        check(&out, "useradd")?;
    }
    check(
        &Command::new("usermod")
            .args(["--password", "*", USER])
            .output()?,
        "usermod",
    )
}

fn keygen(path: &Path) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()?;
    check(&out, "ssh-keygen")
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
