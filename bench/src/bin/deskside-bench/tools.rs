//! The tools an engineer would otherwise use: inxi and sos locally, ssh and scp to a
//! private sshd (see `sshd`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::sshd::{Sshd, check, which};
use crate::stats::Samples;

/// What `ssh host CMD` prints for the same facts the snapshot carries, the quick way.
pub const SSH_DIAG: &str = "uname -r; nproc; free -b; df -B1; ip -j addr";
/// The sos plugins that cover what a snapshot covers.
const SOS_PLUGINS: &str = "kernel,memory,filesys,networking,process";
/// The cipher the scp baseline uses (fast with AES-NI).
pub const SCP_CIPHER: &str = "aes128-gcm@openssh.com";

/// `inxi -Fxz`: timings and output size.
pub fn inxi(runs: usize) -> Result<(Samples, u64)> {
    if which("inxi").is_none() {
        bail!("skipped: inxi not installed (run bench/setup.sh)");
    }
    let mut bytes = 0;
    let samples = Samples::collect(runs, || {
        let out = Command::new("inxi").arg("-Fxz").output()?;
        check(&out, "inxi -Fxz")?;
        bytes = out.stdout.len() as u64;
        Ok(())
    })?;
    Ok((samples, bytes))
}

/// `sos report --batch -o kernel,memory,filesys,networking,process`: timings and the
/// size of the archive it writes.
pub fn sos(runs: usize, scratch: &Path) -> Result<(Samples, u64)> {
    if which("sos").is_none() {
        bail!("skipped: not installed (sos; run bench/setup.sh)");
    }
    let mut bytes = 0;
    let samples = Samples::collect(runs, || {
        let dir = tempfile::tempdir_in(scratch)?;
        let out = Command::new("sos")
            .args([
                "report",
                "--batch",
                "--quiet",
                "-o",
                SOS_PLUGINS,
                "--tmp-dir",
            ])
            .arg(dir.path())
            .output()?;
        check(&out, "sos report")?;
        bytes = dir_bytes(dir.path());
        Ok(())
    })?;
    Ok((samples, bytes))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// `ssh host true` with a fresh connection each run.
pub fn ssh_true(sshd: &Sshd, runs: usize) -> Result<Samples> {
    Samples::collect(runs, || {
        check(&sshd.ssh().arg("true").output()?, "ssh true")
    })
}

/// `ssh host true` through a ControlMaster, after one warm-up run that opens it.
pub fn ssh_true_mux(sshd: &Sshd, runs: usize) -> Result<Samples> {
    check(
        &sshd.ssh_mux().arg("true").output()?,
        "ssh (ControlMaster warm-up)",
    )?;
    Samples::collect(runs, || {
        check(
            &sshd.ssh_mux().arg("true").output()?,
            "ssh true (ControlMaster)",
        )
    })
}

/// `ssh host 'uname -r; nproc; free -b; df -B1; ip -j addr'`: timings and output size.
pub fn ssh_diag(sshd: &Sshd, runs: usize) -> Result<(Samples, u64)> {
    let mut bytes = 0;
    let samples = Samples::collect(runs, || {
        let out = sshd.ssh().arg(SSH_DIAG).output()?;
        check(&out, "ssh diag commands")?;
        bytes = out.stdout.len() as u64;
        Ok(())
    })?;
    Ok((samples, bytes))
}

/// A file of `bytes` random bytes (incompressible) and its SHA-256.
pub fn random_file(path: &Path, bytes: u64) -> Result<String> {
    let mut src = std::fs::File::open("/dev/urandom")?.take(bytes);
    let mut dst = std::fs::File::create(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hash.update(chunk);
        dst.write_all(chunk)?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(hex::encode(hash.finalize()))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hash.update(chunk);
    }
    Ok(hex::encode(hash.finalize()))
}

/// scp of `src` (on the ssh side) to `dst`, timed; then both ends hashed and compared.
pub fn scp(sshd: &Sshd, src: &Path, src_sha: &str, dst: &Path) -> Result<Duration> {
    let start = Instant::now();
    sshd.scp_from(SCP_CIPHER, src, dst)?;
    let took = start.elapsed();
    let got = sha256_file(dst)?;
    if got != src_sha {
        bail!("scp copy differs: sha256 {got}, source {src_sha}");
    }
    Ok(took)
}
