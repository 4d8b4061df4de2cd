//! Loading agent.toml and the environment: defaults, layering, and errors that name
//! the file or variable, the key, the value and the reason.

use super::*;
use std::collections::HashMap;

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
    let path = dir.join("agent.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn control_socket_from_file_relative_to_it_and_env_overrides() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), "control_socket = \"run/control.sock\"\n")?;
    let c = load_with_default(Some(&path), &no_env, &dir.path().join("absent.toml"))?;
    assert_eq!(c.control_socket, Some(dir.path().join("run/control.sock")));
    let env = env_of(&[(env::SOCKET, "/run/elsewhere.sock")]);
    let c = load_with_default(Some(&path), &env, &dir.path().join("absent.toml"))?;
    assert_eq!(c.control_socket, Some(PathBuf::from("/run/elsewhere.sock")));
    let empty = write(dir.path(), "control_socket = \"\"\n")?;
    let err = load_with_default(Some(&empty), &no_env, &dir.path().join("absent.toml"));
    assert!(
        err.as_ref()
            .is_err_and(|e| e.to_string().contains("control_socket")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn no_file_anywhere_means_defaults() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let c = load_with_default(None, &no_env, &dir.path().join("absent.toml"))?;
    assert_eq!(c, AgentConfig::default());
    assert_eq!(c.reconnect_base, RECONNECT_BASE);
    assert_eq!(c.reconnect_cap, RECONNECT_CAP);
    Ok(())
}

#[test]
fn file_then_env_with_flag_path_winning_over_env_path() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(
        dir.path(),
        "state = \"st\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n[reconnect]\nbase = \"2s\"\ncap = \"5m\"\n",
    )?;
    let env = env_of(&[(env::CONFIG, "/nonexistent/agent.toml")]);
    let c = load(Some(&path), &env)?;
    assert_eq!(c.state, Some(dir.path().join("st")));
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.reconnect_base, Duration::from_secs(2));
    assert_eq!(c.reconnect_cap, Duration::from_secs(300));
    assert_eq!(c.source.as_deref(), Some(path.as_path()));

    let env = env_of(&[
        (env::CONFIG, path.to_str().unwrap_or_default()),
        (env::STATE, "/srv/agent"),
        (env::LOG_FORMAT, "human"),
        (env::LOG_LEVEL, "warn,deskside_agent=trace"),
        (env::RECONNECT_CAP, "10m"),
        (env::RECONNECT_BASE, ""),
    ]);
    let c = load(None, &env)?;
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    assert_eq!(c.state, Some(PathBuf::from("/srv/agent")));
    assert_eq!(c.log_format, LogFormat::Human);
    assert_eq!(c.log_level, "warn,deskside_agent=trace");
    assert_eq!(
        c.reconnect_base,
        Duration::from_secs(2),
        "empty env is unset"
    );
    assert_eq!(c.reconnect_cap, Duration::from_secs(600));
    Ok(())
}

#[test]
fn a_named_file_that_is_missing_is_an_error() {
    let env = env_of(&[(env::CONFIG, "/nonexistent/agent.toml")]);
    let err = load(None, &env)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("/nonexistent/agent.toml"), "{err}");
    assert!(err.contains(env::CONFIG), "{err}");
}

#[test]
fn errors_name_the_file_key_value_and_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        ("colour = 1\n", "colour: unknown key"),
        ("[policy]\nallow = []\n", "policy.toml"),
        (
            "[log]\nformat = \"xml\"\n",
            "log.format = \"xml\": not a log format",
        ),
        ("[log]\nlevel = \"verbose\"\n", "log.level = \"verbose\""),
        (
            "[log]\nlevel = \"info,x=loud\"\n",
            "log.level = \"info,x=loud\"",
        ),
        ("[log]\nsize = 3\n", "log.size: unknown key"),
        (
            "[reconnect]\nbase = \"soon\"\n",
            "reconnect.base = \"soon\": not a duration",
        ),
        (
            "[reconnect]\nbase = \"0s\"\n",
            "reconnect.base = \"0s\": must be above zero",
        ),
        (
            "[reconnect]\nbase = \"10s\"\ncap = \"5s\"\n",
            "reconnect.cap = \"5s\": is below the reconnect base (10s)",
        ),
        (
            "[reconnect]\ncap = \"1day\"\n",
            "reconnect.cap = \"1day\": is longer than",
        ),
        (
            "[reconnect]\ncap = 60\n",
            "reconnect.cap = 60: must be a string",
        ),
        ("state = \"\"\n", "state = \"\": is empty"),
        ("log = \"json\"\n", "log = \"json\": must be a table"),
        ("[log\n", "not valid TOML"),
    ];
    for (text, want) in cases {
        let path = write(dir.path(), text)?;
        let err = match load(Some(&path), &no_env) {
            Ok(c) => anyhow::bail!("accepted {text:?}: {c:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{err:?} should contain {want:?}");
        assert!(err.starts_with(&path.display().to_string()), "{err:?}");
    }
    Ok(())
}

#[test]
fn env_errors_name_the_variable() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), "[reconnect]\nbase = \"30s\"\n")?;
    let cases = [
        (
            env::LOG_FORMAT,
            "yaml",
            "environment: DESKSIDE_LOG_FORMAT = \"yaml\"",
        ),
        (
            env::LOG_LEVEL,
            "chatty",
            "environment: DESKSIDE_LOG_LEVEL = \"chatty\"",
        ),
        (
            env::RECONNECT_BASE,
            "1 fortnight",
            "DESKSIDE_RECONNECT_BASE",
        ),
        // The cap from the environment is below the base from the file: blame the cap.
        (
            env::RECONNECT_CAP,
            "10s",
            "environment: DESKSIDE_RECONNECT_CAP = \"10s\": is below the reconnect base (30s)",
        ),
    ];
    for (var, value, want) in cases {
        let env = env_of(&[(var, value)]);
        let err = match load(Some(&path), &env) {
            Ok(c) => anyhow::bail!("accepted {var}={value}: {c:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
    // The base raised by the environment above the file's cap blames the variable.
    let path = write(dir.path(), "[reconnect]\ncap = \"5s\"\n")?;
    let err = load(Some(&path), &env_of(&[(env::RECONNECT_BASE, "8s")]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("DESKSIDE_RECONNECT_BASE = \"8s\": is above the reconnect cap (5s)"),
        "{err}"
    );
    // A file base above the default cap blames the base, not the unwritten cap.
    let path = write(dir.path(), "[reconnect]\nbase = \"2m\"\n")?;
    let err = load(Some(&path), &no_env)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("reconnect.base = \"2m\": is above the reconnect cap (1m)"),
        "{err}"
    );
    assert_eq!(ConfigError::EXIT_CODE, 64);
    Ok(())
}

/// Turns `#key = value` / `#[table]` lines (no space after `#`) into settings.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c == '[' || c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_parses_and_shows_the_defaults() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), example())?;
    let c = load(Some(&path), &no_env)?;
    assert_eq!(
        c,
        AgentConfig {
            source: Some(path.clone()),
            ..AgentConfig::default()
        }
    );
    // Uncommenting the optional keys gives the documented root default for `state`.
    let path = write(dir.path(), &uncomment(example()))?;
    let c = load(Some(&path), &no_env)?;
    assert_eq!(c.state, Some(PathBuf::from("/var/lib/deskside-agent")));
    assert!(example().contains("policy.toml"));
    Ok(())
}
