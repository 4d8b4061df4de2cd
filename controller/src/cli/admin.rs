//! Admin commands that work on the data directory directly: init, serve, tokens, technicians.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskside_proto::msg::identity::{Tier, valid_name};
use tracing::info;

use crate::datadir::DataDir;
use crate::store::TokenFor;

pub use crate::host::reachable;
pub use crate::tokens::{make_cluster_token, make_token};

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
    if let Some(c) = running.console_addr {
        eprintln!(
            "web console on {}://{c}/ (make a login with `deskside console add NAME`)",
            if options
                .console
                .as_ref()
                .is_some_and(|c| matches!(c.tls, crate::console::ConsoleTls::BehindProxy { .. }))
            {
                "http"
            } else {
                "https"
            }
        );
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

pub fn token_create(data: &DataDir, controllers: &[String], ttl: Duration) -> Result<()> {
    let token = make_cluster_token(data, TokenFor::Agent, controllers, ttl)?;
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
    controllers: &[String],
    ttl: Duration,
) -> Result<()> {
    if !valid_name(name) {
        bail!(
            "technician names are 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit (got {name:?})"
        );
    }
    let store = data.open_store()?;
    store.blocking(|db| db.insert_technician(name, tier))?;
    let token = make_cluster_token(
        data,
        TokenFor::Technician(name.to_owned()),
        controllers,
        ttl,
    )?;
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
    let store = data.open_store()?;
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
    let store = data.open_store()?;
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
