//! Loading controller.toml and the environment: defaults, layering, the example file,
//! and errors that name the file or variable, the key, the value and the reason.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::adapters::config::Backend;

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn write(dir: &Path, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("controller.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn evidence_file_limit_is_read_and_bounded() -> anyhow::Result<()> {
    let path = Path::new("/etc/deskside/controller.toml");
    assert_eq!(
        parse("", path)?.max_collect_bytes,
        deskside_proto::limits::MAX_COLLECT_BYTES
    );
    let c = parse("[evidence]\nmax_file_bytes = 1048576\n", path)?;
    assert_eq!(c.max_collect_bytes, 1_048_576);
    for bad in ["0", "-1", "\"1G\"", "68719476737"] {
        let text = format!("[evidence]\nmax_file_bytes = {bad}\n");
        let e = parse(&text, path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("evidence.max_file_bytes"), "{bad}: {e}");
    }
    Ok(())
}

#[test]
fn evidence_dir_is_read_relative_to_the_file_and_defaults_to_the_data_dir() -> anyhow::Result<()> {
    let path = Path::new("/etc/deskside/controller.toml");
    assert_eq!(parse("", path)?.evidence_dir, None);
    let c = parse("[evidence]\ndir = \"/srv/deskside/evidence\"\n", path)?;
    assert_eq!(
        c.evidence_dir,
        Some(PathBuf::from("/srv/deskside/evidence"))
    );
    let c = parse("[evidence]\ndir = \"blobs\"\n", path)?;
    assert_eq!(c.evidence_dir, Some(PathBuf::from("/etc/deskside/blobs")));
    for bad in ["\"\"", "3", "[\"/srv\"]"] {
        let text = format!("[evidence]\ndir = {bad}\n");
        let e = parse(&text, path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("evidence.dir"), "{bad}: {e}");
    }
    Ok(())
}

fn load_err(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    match load(Some(path), env) {
        Ok(c) => anyhow::bail!("accepted: {c:?}"),
        Err(e) => Ok(e.to_string()),
    }
}

#[test]
fn no_file_anywhere_means_defaults() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let c = load_with_default(None, &no_env, &dir.path().join("absent.toml"))?;
    assert_eq!(c, ControllerConfig::default());
    assert_eq!(c.listen.to_string(), "0.0.0.0:4433");
    assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
    assert!(c.metrics_listen.ip().is_loopback());
    Ok(())
}

#[test]
fn the_default_location_is_read_when_present() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), "listen = \"127.0.0.1:5000\"\n")?;
    let c = load_with_default(None, &no_env, &path)?;
    assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    Ok(())
}

#[test]
fn file_then_env() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("rt-password"), "pw\n")?;
    let path = write(
        dir.path(),
        r#"
listen = "[::]:4433"
data = "data"
[metrics]
listen = "0.0.0.0:9000"
[log]
format = "json"
level = "info,deskside_controller=debug"
[sla.high]
response = "30m"
resolution = "2h"
[ticketing]
backend = "rt"
[ticketing.rt]
url = "https://rt.example.org"
user = "deskside"
password_file = "rt-password"
[ticketing.rt.queues]
l1 = "Helpdesk"
l2 = "Desktop"
l3 = "Specialists"
"#,
    )?;
    let c = load(Some(&path), &no_env)?;
    assert_eq!(c.listen.to_string(), "[::]:4433");
    assert_eq!(c.data, Some(dir.path().join("data")));
    assert_eq!(c.metrics_listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.log_level, "info,deskside_controller=debug");
    assert_eq!(c.sla.target("high").response, Duration::from_secs(1800));
    let Backend::Rt(rt) = &c.ticketing.backend else {
        anyhow::bail!("expected rt, got {:?}", c.ticketing);
    };
    // Relative secret files are found next to the config file.
    assert_eq!(rt.password.expose(), "pw");

    let env = env_of(&[
        (
            env::CONFIG,
            "/nonexistent/ignored-when-a-path-is-given.toml",
        ),
        (env::LISTEN, "127.0.0.1:1"),
        (env::DATA, "/srv/deskside"),
        (env::METRICS_LISTEN, "127.0.0.1:2"),
        (env::LOG_FORMAT, "human"),
        (env::LOG_LEVEL, ""),
    ]);
    let c = load(Some(&path), &env)?;
    assert_eq!(c.listen.to_string(), "127.0.0.1:1");
    assert_eq!(c.data, Some(PathBuf::from("/srv/deskside")));
    assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:2");
    assert_eq!(c.log_format, LogFormat::Human);
    assert_eq!(
        c.log_level, "info,deskside_controller=debug",
        "an empty variable is unset"
    );

    let c = load(
        None,
        &env_of(&[(env::CONFIG, path.to_str().unwrap_or_default())]),
    )?;
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    Ok(())
}

#[test]
fn errors_name_the_file_key_value_and_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        (
            "listen = \"localhost:99999\"\n",
            ": listen = \"localhost:99999\": not a socket address (HOST:PORT with an IP, e.g. 0.0.0.0:4433)",
        ),
        ("listen = 4433\n", "listen = 4433: must be a string"),
        (
            "[metrics]\nlisten = \"9464\"\n",
            "metrics.listen = \"9464\": not a socket address",
        ),
        (
            "[metrics]\npath = \"/m\"\n",
            "metrics.path: unknown key; expected listen",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "log.format = \"xml\": not a log format (human or json)",
        ),
        (
            "[log]\nlevel = \"loud\"\n",
            "log.level = \"loud\": \"loud\" is not a level",
        ),
        (
            "lisen = \"0.0.0.0:1\"\n",
            "lisen: unknown key; expected listen, data",
        ),
        ("[tickets]\n", "tickets: unknown key"),
        ("data = \"\"\n", "data = \"\": is empty"),
        ("sla = 1\n", "sla = 1: must be a table"),
        (
            "[sla.asap]\nresponse = \"1h\"\nresolution = \"2h\"\n",
            "sla.asap: unknown priority",
        ),
        ("[ticketing]\nbackend = \"rt\"\n", "ticketing.backend"),
        (
            "listen = \"0.0.0.0:1\"\nlisten = \"0.0.0.0:2\"\n",
            "not valid TOML",
        ),
    ];
    for (text, want) in cases {
        let path = write(dir.path(), text)?;
        let err = load_err(&path, &no_env)?;
        assert!(err.contains(want), "{err:?} should contain {want:?}");
        assert!(err.starts_with(&path.display().to_string()), "{err:?}");
    }
    Ok(())
}

#[test]
fn env_errors_name_the_variable_and_value() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), "")?;
    let cases = [
        (
            env::LISTEN,
            "localhost:4433",
            "environment: DESKSIDE_LISTEN = \"localhost:4433\": not a socket address",
        ),
        (
            env::METRICS_LISTEN,
            "9464",
            "environment: DESKSIDE_METRICS_LISTEN = \"9464\": not a socket address",
        ),
        (
            env::LOG_FORMAT,
            "yaml",
            "environment: DESKSIDE_LOG_FORMAT = \"yaml\": not a log format",
        ),
        (
            env::LOG_LEVEL,
            "info,a=b",
            "environment: DESKSIDE_LOG_LEVEL = \"info,a=b\": not a tracing filter",
        ),
    ];
    for (var, value, want) in cases {
        let err = load_err(&path, &env_of(&[(var, value)]))?;
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
    let err = load(None, &env_of(&[(env::CONFIG, "/nonexistent/c.toml")]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("cannot read /nonexistent/c.toml (named by DESKSIDE_CONFIG)"),
        "{err}"
    );
    assert_eq!(ConfigError::EXIT_CODE, 64);
    Ok(())
}

/// Turns `#key = value` / `#[table]` lines (no space after `#`) into settings, in the
/// sections whose header starts with `[prefix`.
fn uncomment(text: &str, prefix: &str) -> String {
    let mut on = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let setting = line
            .strip_prefix('#')
            .filter(|r| r.starts_with(|c: char| c == '[' || c.is_ascii_lowercase()));
        if let Some(header) = line.trim_start_matches('#').strip_prefix('[') {
            on = header.starts_with(prefix) && setting.is_some();
        }
        out.push(match setting {
            Some(rest) if on => rest,
            _ => line,
        });
    }
    out.join("\n")
}

#[test]
fn the_example_parses_and_shows_the_defaults() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), example())?;
    let c = load(Some(&path), &no_env)?;
    assert_eq!(
        c,
        ControllerConfig {
            source: Some(path.clone()),
            ..ControllerConfig::default()
        }
    );
    // The commented-out [sla] tables spell out the built-in targets.
    let path = write(dir.path(), &uncomment(example(), "sla"))?;
    assert!(std::fs::read_to_string(&path)?.contains("\n[sla.urgent]"));
    let c = load(Some(&path), &no_env)?;
    assert_eq!(c.sla, SlaConfig::default());
    // The commented-out [ticketing] example is valid once its password file exists.
    std::fs::write(dir.path().join("rt-password"), "pw\n")?;
    let path = write(dir.path(), &uncomment(example(), "ticketing"))?;
    let c = load(Some(&path), &no_env)?;
    assert!(matches!(c.ticketing.backend, Backend::Rt(_)), "{c:?}");
    // The commented-out [console] example serves HTTPS with a CA-issued certificate.
    let path = write(dir.path(), &uncomment(example(), "console"))?;
    let c = load(Some(&path), &no_env)?;
    assert_eq!(
        c.console.map(|c| (c.listen.to_string(), c.tls)),
        Some((
            "0.0.0.0:8443".to_owned(),
            crate::console::ConsoleTls::Issued {
                names: vec!["ctl.example.org".to_owned()]
            }
        ))
    );
    // The commented-out [store] names a PostgreSQL database.
    let path = write(dir.path(), &uncomment(example(), "store"))?;
    let c = load(Some(&path), &no_env)?;
    assert_eq!(
        c.store_url.map(|u| u.to_string()).as_deref(),
        Some("postgres://deskside@db.example:5432/deskside")
    );
    // The commented-out [cluster] example names this node and three.
    let path = write(dir.path(), &uncomment(example(), "cluster"))?;
    let c = load(Some(&path), &no_env)?;
    assert_eq!(c.cluster.node_name(), "ctl-a");
    assert_eq!(c.cluster.controllers.len(), 3);
    assert_eq!(c.cluster.nats.as_deref(), Some("nats://127.0.0.1:4222"));
    // And `data`, uncommented, is the service's default data directory.
    let top = example().replace("#data = ", "data = ");
    let c = parse(&top, &path)?;
    assert_eq!(c.data, Some(PathBuf::from("/var/lib/deskside")));
    Ok(())
}

#[test]
fn certificate_validity_is_read_and_bounded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.toml");
    let c = parse("[certificates]\nvalidity = \"30d\"\n", &path)?;
    assert_eq!(c.client_validity, Duration::from_secs(30 * 24 * 3600));
    let short = parse("[certificates]\nvalidity = \"1h\"\n", &path);
    assert!(
        short
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("between 7 days and 2 years")),
        "{short:?}"
    );
    let odd = parse("[certificates]\nrenew = \"1d\"\n", &path);
    assert!(odd.is_err(), "{odd:?}");
    Ok(())
}

#[test]
fn store_url_is_checked_and_never_shown_with_its_password() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(
        dir.path(),
        "[store]\nurl = \"postgres://desk:pw1@db.example/deskside\"\n",
    )?;
    let c = load(Some(&path), &no_env)?;
    let url = c.store_url.ok_or_else(|| anyhow::anyhow!("no url"))?;
    assert_eq!(url.to_string(), "postgres://desk@db.example:5432/deskside");
    // The environment wins, as for every key.
    let env = env_of(&[(env::STORE_URL, "postgres://other@db2.example:6432/d")]);
    let c = load(Some(&path), &env)?;
    assert_eq!(
        c.store_url.map(|u| u.to_string()).as_deref(),
        Some("postgres://other@db2.example:6432/d")
    );
    for bad in [
        "url = \"mysql://desk:pw2@db/d\"",
        "url = \"postgres://desk:pw2@db.example/d?sslmode=require\"",
        "url = 5",
        "host = \"db\"",
    ] {
        let path = write(dir.path(), &format!("[store]\n{bad}\n"))?;
        let e = load_err(&path, &no_env)?;
        assert!(e.contains("store."), "{bad}: {e}");
        assert!(!e.contains("pw2"), "{bad}: {e}");
    }
    let env = env_of(&[(env::STORE_URL, "postgres://desk:pw3@/d")]);
    let e = match load_with_default(None, &env, &dir.path().join("absent.toml")) {
        Ok(c) => anyhow::bail!("accepted {c:?}"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(env::STORE_URL) && !e.contains("pw3"), "{e}");
    Ok(())
}
