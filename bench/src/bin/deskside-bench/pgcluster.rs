//! A throwaway PostgreSQL cluster on 127.0.0.1 for a measure: Debian's PostgreSQL 15
//! binaries, a fresh data directory, the server's default durability (fsync and
//! synchronous commit on), stopped and deleted on drop. The server refuses to run as
//! root, so when this process is root it runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian's PostgreSQL 15 (`apt-get install postgresql`).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The role and database the measures use.
const ROLE: &str = "deskside";

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    /// `(uid, gid)` the server runs as when this process is root.
    owner: Option<(u32, u32)>,
}

impl PgCluster {
    /// initdb, start, createdb. Fails with what to install when the binaries are missing.
    pub fn start() -> Result<PgCluster> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            bail!(
                "PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): \
                 apt-get install postgresql, as .ci/test does"
            );
        }
        let owner = if crate::sshd::is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        // Not under root's 0700 home: the server's user must reach it.
        let dir = tempfile::Builder::new()
            .prefix("deskside-pg-")
            .tempdir_in("/tmp")?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("handing {} to postgres", dir.path().display()))?;
        }
        let port = free_tcp_port()?;
        let cluster = PgCluster { dir, port, owner };
        let data = cluster.data();
        cluster.run(
            Command::new(Path::new(PG_BIN).join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-sync"]),
            "initdb",
        )?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            cluster.port,
            cluster.dir.path().display()
        );
        cluster.run(
            Command::new(Path::new(PG_BIN).join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.dir.path().join("log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
            "pg_ctl start",
        )?;
        let port = cluster.port.to_string();
        cluster.run(
            Command::new(Path::new(PG_BIN).join("createdb")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                ROLE,
                ROLE,
            ]),
            "createdb",
        )?;
        Ok(cluster)
    }

    /// Makes another empty database: its URL.
    pub fn database(&self, name: &str) -> Result<String> {
        let port = self.port.to_string();
        self.run(
            Command::new(Path::new(PG_BIN).join("createdb")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                ROLE,
                name,
            ]),
            "createdb",
        )?;
        Ok(format!("postgres://{ROLE}@127.0.0.1:{}/{name}", self.port))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://deskside@127.0.0.1:PORT/deskside`.
    pub fn url(&self) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{ROLE}", self.port)
    }

    fn run(&self, cmd: &mut Command, what: &str) -> Result<()> {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(self.dir.path());
        let out = cmd.output().with_context(|| format!("running {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run(
            Command::new(Path::new(PG_BIN).join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        );
    }
}

/// The `postgres` user's uid and gid (Debian's package makes it).
fn postgres_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some("postgres")).then_some(())?;
            let uid = f.nth(1)?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .context("no postgres user (apt-get install postgresql makes it)")
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_tcp_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
