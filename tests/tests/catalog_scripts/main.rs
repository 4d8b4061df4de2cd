//! The starter catalog: every manifest loads and signs, and every script body does what
//! its `changes` says when run directly with its interpreter, with only PATH and its
//! `DESKSIDE_PARAM_*` variables, in a sandbox. Anything that would change this machine
//! runs as a dry run, except on objects the test made itself (temp files, a `sleep`
//! child). The only network used is loopback.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use deskside_controller::catalog;
use deskside_proto::msg::script::{CatalogEntry, Interpreter, ParamKind};
use deskside_tests::daemons;

mod files;
mod network;
mod services;
mod system;

/// The PATH a script gets, as on an ordinary Linux desktop.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn catalog_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog")
}

fn load(name: &str) -> Result<(CatalogEntry, String)> {
    let path = catalog_dir().join(format!("{name}.toml"));
    catalog::load(&path).with_context(|| format!("loading {}", path.display()))
}

fn given(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// How a script run ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Both streams, for assertions that do not care which one a message went to.
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn has(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn drain(stream: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut s) = stream {
            let _ = s.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs catalog script `name` the way the agent does: its interpreter on a file holding
/// the body, an empty environment but PATH and the resolved parameters, its own process
/// group, killed at the manifest's timeout.
fn run(name: &str, params: &[(&str, &str)]) -> Result<Run> {
    run_with_tools(name, params, None)
}

/// [`run`], with `tools` (a directory of stand-in programs) first on PATH.
fn run_with_tools(name: &str, params: &[(&str, &str)], tools: Option<&Path>) -> Result<Run> {
    run_with(name, params, tools, &[])
}

/// [`run_with_tools`], with `extra` variables (e.g. `CUPS_SERVER` for a private CUPS).
fn run_with(
    name: &str,
    params: &[(&str, &str)],
    tools: Option<&Path>,
    extra: &[(&str, &Path)],
) -> Result<Run> {
    let (entry, body) = load(name)?;
    let path = match tools {
        Some(dir) => format!("{}:{PATH}", dir.display()),
        None => PATH.to_owned(),
    };
    let env = entry
        .resolve_params(&given(params))
        .with_context(|| format!("parameters for {name}"))?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join(format!("{name}.script"));
    std::fs::write(&script, body)?;
    let mut child = Command::new(entry.interpreter.path())
        .arg(&script)
        .env_clear()
        .env("PATH", path)
        .envs(env)
        .envs(extra.iter().copied())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", entry.interpreter.path()))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(u64::from(entry.timeout_secs));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            bail!("{name} ran past its {} s timeout", entry.timeout_secs);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    eprintln!("{name} {params:?}:\n{run}");
    Ok(run)
}

/// A directory under /tmp, which clean-temp's pattern requires.
fn tmp_dir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("deskside-test-")
        .tempdir_in("/tmp")?)
}

/// Sets a file's access and modification times `days` days back, with `touch -d`.
fn age(path: &Path, days: u32) -> Result<()> {
    let status = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("{days} days ago"))
        .arg(path)
        .status()?;
    ensure!(status.success(), "touch -d failed on {}", path.display());
    Ok(())
}

/// A `sleep` child that is killed and reaped if the test ends early.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Result<Sleeper> {
        Ok(Sleeper(Command::new("sleep").arg("300").spawn()?))
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_manifest_loads_signs_and_is_documented() -> Result<()> {
    let readme = std::fs::read_to_string(catalog_dir().join("README.md"))?;
    let key = catalog::SigningKey::from_bytes(&[42; 32]);
    let mut names = Vec::new();
    for item in std::fs::read_dir(catalog_dir())? {
        let path = item?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (entry, body) =
            catalog::load(&path).with_context(|| format!("loading {}", path.display()))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        ensure!(
            entry.name == stem,
            "{}: name is {}",
            path.display(),
            entry.name
        );
        ensure!(
            readme.contains(&format!("| `{}` |", entry.name)),
            "catalog/README.md has no row for {}",
            entry.name
        );

        let signature = catalog::sign(&entry, &key);
        catalog::verify(&entry, &body, &signature, &key.verifying_key().to_bytes())?;

        if matches!(entry.interpreter, Interpreter::Sh | Interpreter::Bash) {
            ensure!(body.contains("\nset -eu"), "{}: no `set -eu`", entry.name);
        }
        // Parameters are only ever used quoted.
        for (i, _) in body.match_indices("$DESKSIDE_PARAM_") {
            let before = i.checked_sub(1).and_then(|j| body.get(j..i));
            ensure!(
                before == Some("\""),
                "{}: unquoted $DESKSIDE_PARAM_ at byte {i}",
                entry.name
            );
        }
        for p in &entry.params {
            ensure!(
                body.contains(&format!("\"${}\"", p.env_name())),
                "{}: parameter {} is declared but never read",
                entry.name,
                p.name
            );
            // Whatever changes the machine defaults to a dry run.
            if p.name == "dry_run" {
                ensure!(p.kind == ParamKind::Bool && p.default.as_deref() == Some("true"));
            }
        }
        // Safe with the defaults: every parameter but a target-naming one has one.
        let required: Vec<_> = entry
            .params
            .iter()
            .filter(|p| p.default.is_none())
            .collect();
        ensure!(
            required
                .iter()
                .all(|p| ["host", "pid", "service"].contains(&p.name.as_str())),
            "{}: unexpected required parameters {required:?}",
            entry.name
        );
        names.push(entry.name);
    }
    names.sort();
    ensure!(names.len() >= 12, "only {} scripts: {names:?}", names.len());
    Ok(())
}
