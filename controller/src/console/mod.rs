//! The technicians' web console, served by the controller over HTTPS.
//!
//! It is one more front end on the service layer: every action a page offers is a
//! [`TechRequest`](deskside_proto::msg::tech::TechRequest) handed to
//! `crate::service::handle` with the signed-in technician as the
//! [`Principal`](crate::service::Principal), so the console has the CLI's authority, tiers,
//! ticket visibility, consent and audit, and no policy of its own. What it adds is how
//! people sign in (password and TOTP, `auth.rs`), server-side sessions with a CSRF token
//! on every change, pages rendered on the server from compile-time-checked templates
//! (`pages/`), and live updates over server-sent events (`live.rs`, `jobs.rs`).
//!
//! Every byte it serves is in the binary: the templates, the stylesheet and the one small
//! script. Nothing is loaded from another host, and the Content-Security-Policy forbids
//! inline script, so data from machines and people (hostnames, process names, script
//! output, notes) is escaped by the templates and inert even if escaping were missed.

mod assets;
mod auth;
pub mod config;
mod jobs;
mod live;
mod pages;
mod serve;
mod setup;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

pub use auth::{
    IDLE_TIMEOUT, LOCK_AFTER_FAILURES, LOCK_FOR, SESSION_LIFETIME, SIGN_IN_ATTEMPTS_PER_ADDRESS,
};
pub use config::{ConsoleConfig, ConsoleTls};
pub use serve::ConsoleError;
pub use setup::{SETUP_LINK_VALIDITY, add_login};

use crate::service::Shared;

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Console {
    pub shared: Arc<Shared>,
    pub jobs: jobs::Jobs,
    pub sign_ins: auth::AddressThrottle,
    /// The reverse proxy whose `X-Forwarded-For` is believed, when behind one.
    pub proxy: Option<std::net::IpAddr>,
    /// The data directory, for the admin pages' tokens.
    pub data: crate::datadir::DataDir,
    /// The QUIC addresses agents and technicians dial, for the tokens the admin makes.
    pub controllers: Vec<String>,
}

/// Starts serving the console; returns the bound address.
pub(crate) async fn start(
    config: &ConsoleConfig,
    shared: Arc<Shared>,
    data: crate::datadir::DataDir,
    controller: SocketAddr,
    cluster: &[String],
    cancel: CancellationToken,
) -> Result<SocketAddr, ConsoleError> {
    let console = Arc::new(Console {
        shared,
        jobs: jobs::Jobs::default(),
        sign_ins: auth::AddressThrottle::default(),
        proxy: match config.tls {
            ConsoleTls::BehindProxy { proxy } => Some(proxy),
            _ => None,
        },
        data,
        // `[cluster] controllers` when set, else this node as a client on this host
        // reaches it.
        controllers: if cluster.is_empty() {
            vec![crate::host::reachable(controller).to_string()]
        } else {
            cluster.to_vec()
        },
    });
    serve::start(config, router(console.clone()), &console, cancel).await
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(pages::dashboard::page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/setup/{secret}", get(setup::page).post(setup::finish))
        .route("/agents", get(pages::agents::page))
        .route("/agents/columns", post(pages::agents::columns))
        .route("/agents/{id}", get(pages::agent::page))
        .route(
            "/agents/{id}/snapshot/{ticket}/{sha}",
            get(pages::agent::snapshot),
        )
        .route("/agents/{id}/diag", post(pages::actions::diagnostics))
        .route("/agents/{id}/session", post(pages::actions::session))
        .route("/agents/{id}/end", post(pages::actions::end_session))
        .route("/agents/{id}/run", post(pages::actions::run))
        .route("/agents/{id}/collect", post(pages::actions::collect))
        .route(
            "/tickets",
            get(pages::tickets::list).post(pages::tickets::open),
        )
        .route("/tickets/{number}", get(pages::ticket::page))
        .route("/tickets/{number}/timeline", get(pages::ticket::timeline))
        .route("/tickets/{number}/note", post(pages::ticket::note))
        .route("/tickets/{number}/resolve", post(pages::ticket::resolve))
        .route("/tickets/{number}/escalate", post(pages::ticket::escalate))
        .route("/tickets/{number}/sync", post(pages::ticket::sync))
        .route("/tickets/{number}/report", get(pages::ticket::report))
        .route("/tickets/{number}/bundle", get(pages::ticket::bundle))
        .route(
            "/tickets/{number}/evidence/{sha}",
            get(pages::ticket::evidence),
        )
        .route("/catalog", get(pages::catalog::page))
        .route("/admin", get(pages::admin::page))
        .route("/admin/token", post(pages::admin::token))
        .route("/admin/technician", post(pages::admin::technician))
        .route("/admin/revoke", post(pages::admin::revoke))
        .route("/jobs/{id}", get(jobs::page))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/events", get(live::events))
        .route("/assets/{name}", get(assets::asset))
        .fallback(view::not_found)
        .layer(axum::middleware::from_fn(view::security_headers))
        .with_state(console)
}
