//! Enrolling the swarm through the real path: one-time token recorded in the controller's
//! database → the agent makes its own key and CSR → the controller issues a certificate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deskside_controller::cli::admin::make_token;
use deskside_controller::datadir::DataDir;
use deskside_controller::store::TokenFor;
use deskside_proto::msg::enroll::EnrollToken;
use deskside_proto::msg::identity::Identity;
use deskside_transport::{enroll, pki, tls};
use tokio::task::JoinSet;

/// Enrollments in flight at once. Each is an unidentified connection from 127.0.0.1;
/// the controller bounds those per source address, so stay well below its limit (32).
pub const ENROLL_CONCURRENCY: usize = 16;
/// Tokens outlive the whole enrollment phase of a large swarm.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The agent's software string, as the real agent sends it.
pub const SOFTWARE: &str = deskside_agent::enroll::SOFTWARE;

/// An enrolled simulated agent: its id, name and mutual-TLS client config.
#[derive(Debug)]
pub struct Enrolled {
    pub id: String,
    pub hostname: String,
    pub key_pem: String,
    pub config: quinn::ClientConfig,
}

/// Enrolls every hostname in `hostnames` with the controller at `addr`, at most
/// [`ENROLL_CONCURRENCY`] at a time; progress goes to stderr every tenth.
pub async fn enroll_all(
    data: &DataDir,
    addr: &str,
    hostnames: Vec<String>,
    os: &str,
) -> Result<Vec<Enrolled>> {
    let total = hostnames.len();
    let report_every = (total / 10).max(1);
    let mut pending = hostnames.into_iter();
    let mut tasks = JoinSet::new();
    let mut done = Vec::with_capacity(total);
    let os: Arc<str> = Arc::from(os);
    loop {
        while tasks.len() < ENROLL_CONCURRENCY {
            let Some(hostname) = pending.next() else {
                break;
            };
            let (data, addr, os) = (data.clone(), addr.to_owned(), os.clone());
            tasks.spawn(async move { enroll_one(&data, &addr, hostname, &os).await });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        done.push(joined.context("an enrollment task failed")??);
        if done.len() % report_every == 0 {
            eprintln!("enrolled {}/{total}", done.len());
        }
    }
    Ok(done)
}

async fn enroll_one(data: &DataDir, addr: &str, hostname: String, os: &str) -> Result<Enrolled> {
    let token_text = {
        let (data, addr) = (data.clone(), addr.to_owned());
        tokio::task::spawn_blocking(move || make_token(&data, TokenFor::Agent, &addr, TOKEN_TTL))
            .await??
    };
    let token = EnrollToken::parse(&token_text)?;
    let done = enroll::enroll(&token, &hostname, os, SOFTWARE)
        .await
        .with_context(|| format!("enrolling {hostname}"))?;
    let Identity::Agent { id } = done.enrollment.identity else {
        bail!("the controller issued a technician certificate for an agent token");
    };
    let config = tls::client_config(
        pki::cert_from_pem(&done.enrollment.ca_pem)?,
        pki::cert_from_pem(&done.enrollment.cert_pem)?,
        pki::key_from_pem(&done.key_pem)?,
    )?;
    Ok(Enrolled {
        id,
        hostname,
        key_pem: done.key_pem,
        config,
    })
}
