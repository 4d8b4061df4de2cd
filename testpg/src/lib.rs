//! Tests only: one throwaway PostgreSQL cluster per test process, on 127.0.0.1, and a
//! fresh empty database for each caller of [`database`].
//!
//! The cluster is started on first use (initdb, then `postgres` itself, about a second)
//! with fsync off, as the `postgres` user when the tests run as root (the server refuses
//! to run as root). It is stopped when the process exits: an `atexit` hook stops it and
//! removes its directory on a normal exit, and the server gets SIGQUIT (its immediate
//! shutdown) from the kernel when the test process dies any other way, so no stray
//! postmaster outlives a test run. A directory left by a killed run is removed by the
//! next one.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Where Debian's PostgreSQL 15 puts its server binaries (`apt-get install postgresql`).
pub const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The superuser initdb creates; connections from loopback are trusted.
pub const USER: &str = "deskside";
/// How long the server may take to accept connections (a busy 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries with a new port when another process took the one picked.
const START_TRIES: u32 = 3;
/// How long the exit hook waits for the server to stop before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Directory names this crate makes under the temp dir.
const DIR_PREFIX: &str = "deskside-pg-";

/// A running cluster.
pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
    pid: libc::pid_t,
    admin: Mutex<postgres::Client>,
    next: AtomicU64,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// The server's pid and directory, for the exit hook.
static RUNNING: OnceLock<(libc::pid_t, PathBuf)> = OnceLock::new();

/// This process's cluster, started on first call.
pub fn cluster() -> Result<&'static Cluster, String> {
    CLUSTER
        .get_or_init(start)
        .as_ref()
        .map_err(|e| format!("the test PostgreSQL cluster did not start: {e}"))
}

/// A new, empty database on this process's cluster; its `postgres://` URL. Callable
/// from async code too: the work runs on a thread of its own (the synchronous client
/// may not run inside a runtime).
pub fn database() -> Result<String, String> {
    std::thread::scope(|s| {
        s.spawn(create_database)
            .join()
            .unwrap_or_else(|_| Err("creating the test database panicked".to_owned()))
    })
}

fn create_database() -> Result<String, String> {
    let c = cluster()?;
    let n = c.next.fetch_add(1, Ordering::Relaxed);
    let name = format!("t{}_{n}", std::process::id());
    c.admin
        .lock()
        .map_err(|_| "a previous database creation panicked".to_owned())?
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .map_err(|e| format!("creating database {name}: {e}"))?;
    Ok(c.url(&name))
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("pid", &self.pid)
            .finish()
    }
}

impl Cluster {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's log (startup failures, errors).
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

fn start() -> Result<Cluster, String> {
    let initdb = Path::new(BIN).join("initdb");
    if !initdb.exists() {
        return Err(format!(
            "{} is missing: install PostgreSQL 15 (apt-get install postgresql-15)",
            initdb.display()
        ));
    }
    remove_stale();
    let owner = owner()?;
    let dir = tempfile::Builder::new()
        .prefix(DIR_PREFIX)
        .tempdir()
        .map_err(|e| format!("creating a directory for the cluster: {e}"))?
        .keep();
    std::fs::write(dir.join("owner.pid"), std::process::id().to_string())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("giving {} to the postgres user: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let mut init = Command::new(&initdb);
    init.args(["-D"])
        .arg(&data)
        .args([
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_owner(&mut init, owner);
    let out = init
        .output()
        .map_err(|e| format!("running {}: {e}", initdb.display()))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut last = String::new();
    for _ in 0..START_TRIES {
        let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
        let mut child = spawn_server(&dir, &data, port, owner)?;
        let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
        match wait_ready(&mut child, port) {
            Ok(admin) => {
                let _ = RUNNING.set((pid, dir.clone()));
                // SAFETY: `stop_at_exit` is an `extern "C" fn()` that never unwinds.
                unsafe { libc::atexit(stop_at_exit) };
                // The child is reaped by the exit hook, by pid.
                std::mem::forget(child);
                return Ok(Cluster {
                    port,
                    dir,
                    pid,
                    admin: Mutex::new(admin),
                    next: AtomicU64::new(0),
                });
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                last = format!(
                    "{e}; server log: {}",
                    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Err(last)
}

/// The postgres user's uid and gid when running as root (the server refuses root).
fn owner() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam(3) with a NUL-terminated name; the result is read at once, before
    // any other call that could reuse its static buffer (tests start the cluster once).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(
            "running as root, and there is no postgres user to run the server as (apt-get install postgresql-15 creates it)"
                .into(),
        );
    }
    // SAFETY: `pw` is non-null and points to getpwnam's passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `postgres` from a thread that lives as long as the process, with the parent
/// death signal set: when the process dies, however it dies, the server gets SIGQUIT.
fn spawn_server(
    dir: &Path,
    data: &Path,
    port: u16,
    owner: Option<(u32, u32)>,
) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(Path::new(BIN).join("postgres"));
    cmd.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    as_owner(&mut cmd, owner);
    // SAFETY: getpid(2) cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid). It runs after the uid change, which would
    // otherwise clear the parent death signal.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("the test process already exited"));
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("testpg-keeper".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn());
            // The parent death signal follows this thread: it must outlive the tests.
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| format!("starting the keeper thread: {e}"))?;
    rx.recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("starting {BIN}/postgres: {e}"))
}

fn wait_ready(child: &mut Child, port: u16) -> Result<postgres::Client, String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let url = format!("host=127.0.0.1 port={port} user={USER} dbname=postgres");
    loop {
        match postgres::Client::connect(&url, postgres::NoTls) {
            Ok(c) => return Ok(c),
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the server exited ({status})"));
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the server did not accept connections within {READY_TIMEOUT:?}: {e}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

extern "C" fn stop_at_exit() {
    let Some((pid, dir)) = RUNNING.get() else {
        return;
    };
    // SAFETY: kill(2) and waitpid(2) on our own child's pid; no memory of ours is touched
    // but the status integer.
    unsafe {
        libc::kill(*pid, libc::SIGQUIT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut status = 0;
        while libc::waitpid(*pid, &mut status, libc::WNOHANG) == 0 {
            if Instant::now() > deadline {
                libc::kill(*pid, libc::SIGKILL);
                libc::waitpid(*pid, &mut status, 0);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes cluster directories whose test process is gone (killed before its exit hook).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        if !ours {
            continue;
        }
        let owner: Option<libc::pid_t> = std::fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let alive = owner.is_some_and(|pid| pid > 1 && unsafe { libc::kill(pid, 0) } == 0);
        if owner.is_some() && !alive {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_gets_its_own_empty_database() -> Result<(), String> {
        let started = Instant::now();
        let a = database()?;
        let first = started.elapsed();
        let b = database()?;
        let second = started.elapsed() - first;
        assert_ne!(a, b);
        eprintln!("cluster and first database: {first:?}; another database: {second:?}");
        let mut client =
            postgres::Client::connect(&b, postgres::NoTls).map_err(|e| e.to_string())?;
        let tables: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| e.to_string())?;
        assert_eq!(tables, 0);
        let c = cluster()?;
        assert!(c.log().exists());
        Ok(())
    }
}
