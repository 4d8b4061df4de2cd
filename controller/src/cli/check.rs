//! `deskside status` and `deskside config check`: the running controller, and the
//! configuration it would start with, at a glance.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

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
    match health.node.as_str() {
        "" => println!("controller {} — {}", health.version, health.status),
        node => println!(
            "controller {} on node {node} — {}",
            health.version, health.status
        ),
    }
    println!("  agents connected:      {}", health.agents_connected);
    println!("  technicians connected: {}", health.technicians_connected);
    println!("  outbox pending:        {}", health.outbox_depth);
    println!("  database:              {}", health.database);
    println!("  requests:              {ok} ok, {failed} refused or failed (since start)");
    for w in &health.warnings {
        println!("  warning:               {w}");
    }
    if !health.cluster.is_empty() {
        let now = crate::clock::now_secs();
        println!("  cluster:               {} node(s)", health.cluster.len());
        for n in &health.cluster {
            let this = if n.name == health.node {
                " (this node)"
            } else {
                ""
            };
            println!(
                "    {:<16} {:<22} {:<4} {:>6} agents  heartbeat {} s ago{this}",
                n.name,
                n.address,
                n.state.label(),
                n.agents_online,
                now.saturating_sub(n.heartbeat_at)
            );
        }
    }
    Ok(())
}

pub async fn config(
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
    println!("  node            {}", config.cluster.node_name());
    if !config.cluster.controllers.is_empty() {
        println!(
            "  cluster         {} (what new tokens carry)",
            config.cluster.controllers.join(", ")
        );
    }
    println!("  metrics listen  {}", config.metrics_listen);
    println!(
        "  console         {}",
        match &config.console {
            None => "off".to_owned(),
            Some(c) => match &c.tls {
                crate::console::ConsoleTls::Issued { .. } => {
                    format!(
                        "https://{} (certificate from the controller's CA)",
                        c.listen
                    )
                }
                crate::console::ConsoleTls::Files { cert, .. } => {
                    format!("https://{} (certificate {})", c.listen, cert.display())
                }
                crate::console::ConsoleTls::BehindProxy { proxy } => {
                    format!("http://{} behind the proxy at {proxy}", c.listen)
                }
            },
        }
    );
    let data = super::data_dir(data, config)?;
    println!("  data            {}", data.root().display());
    println!("  store           {}", data.store_at());
    println!(
        "  evidence        {}{}",
        config
            .evidence_dir
            .clone()
            .unwrap_or_else(|| data.evidence())
            .display(),
        if config.evidence_dir.is_some() {
            " ([evidence] dir, shared by the cluster's nodes)"
        } else {
            " (in the data directory)"
        }
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
    println!(
        "  routing         {}",
        match &config.cluster.nats {
            None => "none: this node reaches only its own agents (no [cluster] nats)".to_owned(),
            Some(url) => format!("through NATS at {}", crate::route::redact(url)),
        }
    );
    for w in config.ticketing.warnings() {
        println!("  warning         {w}");
    }
    if reach {
        reach_ticketing(&config.ticketing).await?;
        if let Some(url) = &config.cluster.nats {
            crate::route::reach(url).await?;
            println!(
                "  reach           NATS at {}: connected",
                crate::route::redact(url)
            );
        }
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
