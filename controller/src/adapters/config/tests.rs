//! `[ticketing]` parsing: each backend, secrets from files, the http:// rule, and errors
//! that name the file and key.

use super::*;

fn parse_in(dir: &Path, text: &str) -> Result<TicketingConfig, ConfigError> {
    parse(text, &dir.join(CONTROLLER_TOML), dir)
}

const RT: &str = r#"
[ticketing]
backend = "rt"
[ticketing.rt]
url = "http://127.0.0.1:8080/"
user = "deskside"
password = "s3cret"
[ticketing.rt.queues]
l1 = "Helpdesk"
l2 = "Desktop Engineering"
l3 = "Specialists"
"#;

#[test]
fn missing_file_or_section_is_backend_none() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    assert_eq!(load(dir.path())?.backend, Backend::None);
    std::fs::write(dir.path().join(CONTROLLER_TOML), "[other]\nx = 1\n")?;
    assert_eq!(load(dir.path())?.backend, Backend::None);
    Ok(())
}

#[test]
fn rt_section_is_validated() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Backend::Rt(rt) = parse_in(dir.path(), RT)?.backend else {
        anyhow::bail!("expected rt");
    };
    assert_eq!(rt.url, "http://127.0.0.1:8080");
    assert_eq!(rt.password.expose(), "s3cret");
    assert_eq!(rt.queues.for_tier(Tier::L2), "Desktop Engineering");
    assert_eq!(rt.timeout, DEFAULT_TIMEOUT);
    assert!(!format!("{rt:?}").contains("s3cret"));
    Ok(())
}

#[test]
fn password_file_is_relative_to_the_data_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("rt-pw"), "from-file\n")?;
    let text = RT.replace("password = \"s3cret\"", "password_file = \"rt-pw\"");
    let Backend::Rt(rt) = parse_in(dir.path(), &text)?.backend else {
        anyhow::bail!("expected rt");
    };
    assert_eq!(rt.password.expose(), "from-file");
    Ok(())
}

#[test]
fn errors_name_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        (RT.replace("user = \"deskside\"\n", "user = \"deskside\"\ncolour = 1\n"), "colour"),
        (RT.replace("http://127.0.0.1:8080/", "ftp://x"), "ticketing.rt.url"),
        (RT.replace("password = \"s3cret\"", "password_file = \"nope\""), "ticketing.rt.password_file"),
        (RT.replace("password = \"s3cret\"\n", ""), "ticketing.rt.password"),
        (RT.replace("l2 = \"Desktop Engineering\"", "l2 = \" \""), "ticketing.rt.queues.l2"),
        (RT.replace("backend = \"rt\"", "backend = \"jira\""), "jira"),
        ("[ticketing]\nbackend = \"webhook\"\n".to_owned(), "ticketing.backend"),
        (
            "[ticketing]\nbackend = \"webhook\"\n[ticketing.webhook]\nurl = \"https://h\"\nsecret = \"k\"\ntimeout_secs = 0\n".to_owned(),
            "ticketing.webhook.timeout_secs",
        ),
    ];
    for (text, key) in cases {
        let err = match parse_in(dir.path(), &text) {
            Ok(c) => anyhow::bail!("accepted {text}: {c:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(key), "{err:?} should name {key}");
        assert!(
            err.contains(CONTROLLER_TOML),
            "{err:?} should name the file"
        );
    }
    Ok(())
}

#[test]
fn plain_http_off_loopback_is_refused_unless_allowed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for loopback in [
        "http://127.0.0.1:8080",
        "http://127.8.0.1",
        "http://localhost/rt",
        "http://[::1]:80",
    ] {
        let cfg = parse_in(dir.path(), &RT.replace("http://127.0.0.1:8080/", loopback))?;
        assert!(cfg.warnings().is_empty(), "{loopback}: {cfg:?}");
    }
    let remote = RT.replace("http://127.0.0.1:8080/", "http://rt.example.org");
    let err = match parse_in(dir.path(), &remote) {
        Ok(c) => anyhow::bail!("accepted plain http to a remote host: {c:?}"),
        Err(e) => e.to_string(),
    };
    for part in [
        "ticketing.rt.url",
        "rt.example.org",
        "password",
        "unencrypted",
        "https://",
        "ticketing.rt.allow_insecure_http = true",
    ] {
        assert!(err.contains(part), "{err:?} should say {part:?}");
    }
    let hook = "[ticketing]\nbackend = \"webhook\"\n[ticketing.webhook]\nurl = \"http://10.0.0.5/h\"\nsecret = \"k\"\n";
    let err = parse_in(dir.path(), hook).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("ticketing.webhook.allow_insecure_http")),
        "{err:?}"
    );

    let allowed = remote.replace(
        "password = \"s3cret\"",
        "password = \"s3cret\"\nallow_insecure_http = true",
    );
    let cfg = parse_in(dir.path(), &allowed)?;
    let warnings = cfg.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings.iter().all(|w| w.contains("http://rt.example.org")),
        "{warnings:?}"
    );
    let https = RT.replace("http://127.0.0.1:8080/", "https://rt.example.org");
    assert!(parse_in(dir.path(), &https)?.warnings().is_empty());
    Ok(())
}

#[test]
fn webhook_host_is_kept_for_the_reference() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = "[ticketing]\nbackend = \"webhook\"\n[ticketing.webhook]\nurl = \"https://hooks.example.org:8443/x\"\nsecret = \"k\"\n";
    let Backend::Webhook(w) = parse_in(dir.path(), text)?.backend else {
        anyhow::bail!("expected webhook");
    };
    assert_eq!(w.host, "hooks.example.org");
    assert_eq!(w.url, "https://hooks.example.org:8443/x");
    Ok(())
}
