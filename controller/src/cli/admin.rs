//! Admin commands that work on the data directory directly: init, serve, tokens, technicians.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskside_proto::limits::MAX_NAME_BYTES;
use deskside_proto::msg::enroll::{EnrollToken, TokenKind};
use deskside_proto::msg::identity::{Tier, valid_name};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::clock::now_secs;
use crate::datadir::DataDir;
use crate::store::{Store, TokenFor, TokenRecord};

pub fn init(data: &DataDir) -> Result<()> {
    data.init()?;
    println!("initialised {}", data.root().display());
    println!("next: deskside --data {} serve", data.root().display());
    Ok(())
}

pub async fn serve(data: &DataDir, options: &crate::server::Options) -> Result<()> {
    if data.root().join("controller.toml").exists() {
        tracing::warn!(
            "{} is ignored: the controller reads its config from --config, $DESKSIDE_CONFIG or /etc/deskside/controller.toml",
            data.root().join("controller.toml").display()
        );
    }
    let running = crate::server::start_with(data, options).await?;
    eprintln!(
        "deskside controller listening on {} (UDP/QUIC); Ctrl-C to stop",
        running.addr
    );
    if let Some(m) = running.metrics_addr {
        eprintln!("metrics and health on http://{m}/metrics and /health");
    }
    shutdown_signal().await?;
    info!("shutdown requested");
    running.shutdown();
    running.stopped().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Makes and records a token; returns its text.
pub fn make_token(
    data: &DataDir,
    kind: TokenFor,
    controller: &str,
    ttl: Duration,
) -> Result<String> {
    let valid = controller.len() <= MAX_NAME_BYTES
        && controller.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
    if !valid {
        bail!(
            "--controller must be HOST:PORT as agents will reach it, e.g. 192.0.2.10:4433 (got {controller:?})"
        );
    }
    let keys = data.load()?;
    let store = Store::open(&data.database())?;
    let secret: [u8; 32] = rand::random();
    let now = now_secs();
    let record = TokenRecord {
        secret_sha256: hex::encode(Sha256::digest(secret)),
        for_: kind.clone(),
        created_at: now,
        expires_at: now.saturating_add(ttl.as_secs()),
    };
    store.blocking(|db| db.insert_token(&record))?;
    let token = EnrollToken {
        kind: match kind {
            TokenFor::Agent => TokenKind::Agent,
            TokenFor::Technician(_) => TokenKind::Technician,
        },
        controller: controller.to_owned(),
        ca_sha256: keys.ca_sha256,
        secret,
    };
    Ok(token.to_text())
}

/// Where a client on this host reaches a server listening on `listen`: the address itself,
/// or loopback of the same family on its port when it listens on every address.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

/// The controller address a token names when the admin gave none: the QUIC `listen`
/// address when it names one, else loopback on its port (only right on this host). Returns
/// the address and how it was chosen, for the admin to read.
pub fn assumed_controller(listen: SocketAddr) -> (String, &'static str) {
    let addr = reachable(listen);
    let why = if addr == listen {
        "the address the controller listens on"
    } else {
        "assumed: this host only, on the port the controller listens on"
    };
    (addr.to_string(), why)
}

/// "1 day", "2 days 3h", "24h 30m", "10m": for telling a person how long something lasts
/// (humantime writes "1day").
pub fn human_duration(d: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    let secs = d.as_secs();
    let days = secs / DAY;
    let rest = Duration::from_secs(secs % DAY);
    let rest = (!rest.is_zero()).then(|| humantime::format_duration(rest).to_string());
    match (days, rest) {
        (0, None) => "0s".to_owned(),
        (0, Some(r)) => r,
        (1, None) => "1 day".to_owned(),
        (n, None) => format!("{n} days"),
        (1, Some(r)) => format!("1 day {r}"),
        (n, Some(r)) => format!("{n} days {r}"),
    }
}

pub fn token_create(data: &DataDir, controller: &str, ttl: Duration) -> Result<()> {
    let token = make_token(data, TokenFor::Agent, controller, ttl)?;
    eprintln!(
        "one-time agent enrollment token, valid for {}; on the machine run: deskside-agent enroll TOKEN",
        human_duration(ttl)
    );
    println!("{token}");
    Ok(())
}

pub fn tech_add(
    data: &DataDir,
    name: &str,
    tier: Tier,
    controller: &str,
    ttl: Duration,
) -> Result<()> {
    if !valid_name(name) {
        bail!(
            "technician names are 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit (got {name:?})"
        );
    }
    let store = Store::open(&data.database())?;
    store.blocking(|db| db.insert_technician(name, tier))?;
    let token = make_token(data, TokenFor::Technician(name.to_owned()), controller, ttl)?;
    eprintln!(
        "technician {name} ({tier}) added; one-time login token, valid for {}; on their workstation run: deskside login TOKEN",
        human_duration(ttl)
    );
    println!("{token}");
    Ok(())
}

/// Validates, signs and stores catalog manifests.
pub fn script_add(data: &DataDir, files: &[std::path::PathBuf]) -> Result<()> {
    let keys = data.load()?;
    let store = Store::open(&data.database())?;
    for file in files {
        let (mut entry, body) = crate::catalog::load(file)?;
        let existing = store.blocking(|db| match db.script(&entry.name) {
            Ok(s) => Ok(Some(s.script)),
            Err(crate::store::StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })?;
        if let Some(old) = &existing {
            let mut same = entry.clone();
            same.version = old.entry.version;
            if same == old.entry && body == old.body {
                println!("{} v{} unchanged", entry.name, old.entry.version);
                continue;
            }
            // A changed script always gets a higher version than the one agents saw.
            entry.version = entry.version.max(old.entry.version + 1);
        }
        let signature = crate::catalog::sign(&entry, &keys.script_key);
        let signed = deskside_proto::msg::script::SignedScript {
            entry,
            body,
            signature,
        };
        store.blocking(|db| db.put_script(&signed))?;
        println!(
            "{} {} v{} ({}, sha256:{})",
            if existing.is_some() {
                "updated"
            } else {
                "added"
            },
            signed.entry.name,
            signed.entry.version,
            signed.entry.tier,
            hex::encode(signed.entry.body_sha256)
        );
    }
    Ok(())
}

/// `deskside status`: reads `/health` and `/metrics` from the running controller.
pub async fn status(metrics: SocketAddr, json: bool) -> Result<()> {
    let fetch = move |path: &str| -> Result<String> {
        let url = format!("http://{metrics}{path}");
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut reply = agent
            .get(&url)
            .call()
            .with_context(|| format!("cannot reach the controller's metrics endpoint at {url} — is `deskside serve` running? Pass its metrics address with --metrics ADDR, or the controller's config with --config FILE"))?;
        Ok(reply
            .body_mut()
            .with_config()
            .limit(4 * 1024 * 1024)
            .read_to_string()?)
    };
    let (health, text) = tokio::task::spawn_blocking(move || -> Result<(String, String)> {
        Ok((fetch("/health")?, fetch("/metrics")?))
    })
    .await
    .context("status worker")??;
    let health: crate::metrics::Health =
        serde_json::from_str(&health).context("the health endpoint answered something else")?;
    // Sum the request counters by outcome from the exposition text.
    let mut ok = 0u64;
    let mut failed = 0u64;
    for line in text
        .lines()
        .filter(|l| l.starts_with("deskside_requests_total{"))
    {
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64);
        if line.contains("outcome=\"ok\"") {
            ok += n
        } else {
            failed += n
        }
    }
    if json {
        return crate::cli::print_json(
            &serde_json::json!({"health": health, "requests_ok": ok, "requests_failed": failed}),
        );
    }
    println!("controller {} — {}", health.version, health.status);
    println!("  agents connected:      {}", health.agents_connected);
    println!("  technicians connected: {}", health.technicians_connected);
    println!("  outbox pending:        {}", health.outbox_depth);
    println!("  database:              {}", health.database);
    println!("  requests:              {ok} ok, {failed} refused or failed (since start)");
    for w in &health.warnings {
        println!("  warning:               {w}");
    }
    Ok(())
}

pub async fn config_check(
    config: &crate::config::ControllerConfig,
    data: Option<std::path::PathBuf>,
    reach: bool,
) -> Result<()> {
    match &config.source {
        Some(p) => println!("{}: valid", p.display()),
        None => println!(
            "no config file (looked at $DESKSIDE_CONFIG and {}); built-in defaults are valid",
            crate::config::DEFAULT_PATH
        ),
    }
    println!("  listen          {}", config.listen);
    println!("  metrics listen  {}", config.metrics_listen);
    println!(
        "  data            {}",
        super::data_dir(data)?.root().display()
    );
    println!(
        "  log             {:?}, level {}",
        config.log_format, config.log_level
    );
    println!(
        "  ticketing       {}",
        match &config.ticketing.backend {
            crate::adapters::config::Backend::None => "none".to_owned(),
            other => format!("{other:?}")
                .split('(')
                .next()
                .unwrap_or("configured")
                .to_lowercase(),
        }
    );
    for w in config.ticketing.warnings() {
        println!("  warning         {w}");
    }
    if reach {
        reach_ticketing(&config.ticketing).await?;
    }
    Ok(())
}

/// `config check --reach`: logs in to the configured RT and looks up each tier's queue.
async fn reach_ticketing(ticketing: &crate::adapters::TicketingConfig) -> Result<()> {
    use crate::adapters::config::Backend;
    let rt = match &ticketing.backend {
        Backend::Rt(rt) => rt.clone(),
        Backend::None => {
            println!("  reach           nothing to reach: ticketing backend is none");
            return Ok(());
        }
        Backend::Webhook(_) => {
            println!(
                "  reach           not checked: a webhook has no read-only request to try; \
                 `deskside ticket sync N` pushes one ticket"
            );
            return Ok(());
        }
    };
    let checks = tokio::task::spawn_blocking(move || crate::adapters::rt::check_queues(&rt))
        .await
        .context("the RT check stopped")?;
    let mut missing = 0;
    for check in &checks {
        println!("  reach           {check}");
        missing += usize::from(!check.is_ok());
    }
    if missing > 0 {
        bail!(
            "{missing} of {} Request Tracker check(s) failed; create the queues in RT (Admin → \
             Queues) or fix [ticketing.rt] in the config, and give the RT user the rights the \
             README's Request Tracker section lists",
            checks.len()
        );
    }
    Ok(())
}

pub fn backup(data: &DataDir, out: &std::path::Path) -> Result<()> {
    let summary = crate::backup::backup(data, out)?;
    println!("{summary}");
    Ok(())
}

pub fn restore(archive: &std::path::Path, into: &DataDir) -> Result<()> {
    let summary = crate::backup::restore(archive, into)?;
    println!("{summary}");
    Ok(())
}

/// Revokes an agent or a technician in the store; a running controller closes their
/// connections at its next sweep (seconds) and refuses them from then on.
pub fn revoke(data: &DataDir, agent: Option<&str>, tech: Option<&str>) -> Result<()> {
    let store = Store::open(&data.database())?;
    match (agent, tech) {
        (Some(id), _) => {
            if !store.blocking(|db| db.revoke_agent(id))? {
                bail!("no agent {id:?}; `deskside agents` lists them");
            }
            println!(
                "agent {id} revoked; it is disconnected within seconds and refused from now on"
            );
        }
        (None, Some(name)) => {
            if !store.blocking(|db| db.revoke_technician(name))? {
                bail!("no technician {name:?}");
            }
            println!("technician {name} revoked; their connections close within seconds");
        }
        (None, None) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        let h = |s: u64| human_duration(Duration::from_secs(s));
        assert_eq!(h(24 * 3600), "1 day");
        assert_eq!(h(7 * 24 * 3600), "7 days");
        assert_eq!(h(26 * 3600), "1 day 2h");
        assert_eq!(h(3 * 24 * 3600 + 90), "3 days 1m 30s");
        assert_eq!(h(600), "10m");
        assert_eq!(h(0), "0s");
    }

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() -> anyhow::Result<()> {
        assert_eq!(
            reachable("0.0.0.0:9000".parse()?).to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(reachable("[::]:9000".parse()?).to_string(), "[::1]:9000");
        assert_eq!(
            reachable("192.0.2.7:9000".parse()?).to_string(),
            "192.0.2.7:9000"
        );
        Ok(())
    }

    #[test]
    fn a_token_names_the_listen_address_or_says_it_assumed() -> anyhow::Result<()> {
        let (addr, why) = assumed_controller("192.0.2.10:5000".parse()?);
        assert_eq!(addr, "192.0.2.10:5000");
        assert!(!why.contains("assumed"), "{why}");
        let (addr, why) = assumed_controller("0.0.0.0:5000".parse()?);
        assert_eq!(addr, "127.0.0.1:5000");
        assert!(why.contains("assumed"), "{why}");
        Ok(())
    }
}
