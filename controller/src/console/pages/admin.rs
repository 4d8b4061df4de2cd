//! `/admin` (admins only): enrollment tokens, technicians and their console logins,
//! revocation, and the console's own audit. The same store operations as the admin
//! commands on the controller host, written to the console audit with the admin's name.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deskside_proto::msg::identity::{Tier, valid_name};
use serde::Deserialize;

use crate::console::Console;
use crate::console::auth::{Posted, Session};
use crate::console::setup::add_login;
use crate::console::view::{self, Me, Problem};
use crate::store::{AuditLine, ConsoleLogin, Technician, TokenFor};

/// How long a token made on the admin page is good for.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Audit lines shown.
const AUDIT_LINES: u64 = 100;

#[derive(askama::Template)]
#[template(path = "console/admin.html")]
struct AdminPage {
    me: Option<Me>,
    technicians: Vec<(Technician, Option<ConsoleLogin>)>,
    audit: Vec<AuditLine>,
    /// Something made just now, shown once: (what, text).
    made: Vec<(String, String)>,
}

fn admins_only(session: &Session) -> Option<Response> {
    (!session.admin).then(|| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "The admin pages are for console admins.",
        )
        .for_me(session.me())
        .into_response()
    })
}

async fn render(console: &Console, session: &Session, made: Vec<(String, String)>) -> Response {
    let listed = console
        .shared
        .store
        .run(|db| {
            let logins = db.console_logins()?;
            let techs = db
                .technicians()?
                .into_iter()
                .map(|t| {
                    let login = logins.iter().find(|l| l.technician == t.name).cloned();
                    (t, login)
                })
                .collect::<Vec<_>>();
            Ok((techs, db.console_audit_tail(AUDIT_LINES)?))
        })
        .await;
    match listed {
        Ok((technicians, audit)) => view::render(&AdminPage {
            me: Some(session.me()),
            technicians,
            audit,
            made,
        }),
        Err(e) => view::internal(&e.to_string()),
    }
}

pub async fn page(State(console): State<Arc<Console>>, session: Session) -> Response {
    if let Some(r) = admins_only(&session) {
        return r;
    }
    render(&console, &session, Vec::new()).await
}

async fn make(console: &Console, kind: TokenFor) -> Result<String, Response> {
    let (data, controllers) = (console.data.clone(), console.controllers.clone());
    tokio::task::spawn_blocking(move || {
        crate::tokens::make_cluster_token(&data, kind, &controllers, TOKEN_TTL)
    })
    .await
    .map_err(|e| view::internal(&e.to_string()))?
    .map_err(|e| view::internal(&format!("{e:#}")))
}

#[derive(Debug, Deserialize)]
pub struct Nothing {}

/// A one-time agent enrollment token, shown once.
async fn token_page(console: &Console, session: &Session) -> Response {
    match make(console, TokenFor::Agent).await {
        Ok(t) => {
            session
                .audit(
                    console,
                    "token_create",
                    "made an agent enrollment token".into(),
                )
                .await;
            render(
                console,
                session,
                vec![(
                    "Agent enrollment token (valid 24 h; on the machine: deskside-agent enroll TOKEN)".into(),
                    t,
                )],
            )
            .await
        }
        Err(r) => r,
    }
}

pub async fn token(State(console): State<Arc<Console>>, posted: Posted<Nothing>) -> Response {
    if let Some(r) = admins_only(&posted.session) {
        return r;
    }
    token_page(&console, &posted.session).await
}

#[derive(Debug, Deserialize)]
pub struct TechnicianForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    admin: Option<String>,
    /// `new` adds the technician; `console` only (re)makes their console login.
    #[serde(default)]
    action: String,
}

pub async fn technician(
    State(console): State<Arc<Console>>,
    posted: Posted<TechnicianForm>,
) -> Response {
    let session = &posted.session;
    if let Some(r) = admins_only(session) {
        return r;
    }
    let f = posted.form;
    let name = f.name.trim().to_owned();
    if !valid_name(&name) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Technician names are 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
        )
        .for_me(session.me())
        .into_response();
    }
    let admin = f.admin.is_some();
    let mut made = Vec::new();
    if f.action == "new" {
        let Ok(tier) = f.tier.parse::<Tier>() else {
            return Problem::new(StatusCode::BAD_REQUEST, "Choose the technician's tier.")
                .for_me(session.me())
                .into_response();
        };
        let who = name.clone();
        if let Err(e) = console
            .shared
            .store
            .run(move |db| db.insert_technician(&who, tier))
            .await
        {
            return view::failure(session.me(), &e.into());
        }
        match make(&console, TokenFor::Technician(name.clone())).await {
            Ok(t) => made.push((
                format!("Command-line login for {name} (valid 24 h; on their workstation: deskside login TOKEN)"),
                t,
            )),
            Err(r) => return r,
        }
        session
            .audit(
                &console,
                "technician_add",
                format!("added technician {name} ({tier})"),
            )
            .await;
    }
    let store = console.shared.store.clone();
    let who = name.clone();
    let link = tokio::task::spawn_blocking(move || add_login(&store, &who, admin)).await;
    match link {
        Ok(Ok(path)) => {
            made.push((
                format!(
                    "One-time console setup link for {name} (valid 24 h; open it in their browser)"
                ),
                path,
            ));
            session
                .audit(
                    &console,
                    "console_login",
                    format!(
                        "made a console setup link for {name}{}",
                        if admin { " (admin)" } else { "" }
                    ),
                )
                .await;
        }
        Ok(Err(e)) => return view::failure(session.me(), &e.into()),
        Err(e) => return view::internal(&e.to_string()),
    }
    render(&console, session, made).await
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    agent: String,
    #[serde(default)]
    technician: String,
}

pub async fn revoke(State(console): State<Arc<Console>>, posted: Posted<RevokeForm>) -> Response {
    let session = &posted.session;
    if let Some(r) = admins_only(session) {
        return r;
    }
    let (agent, tech) = (
        posted.form.agent.trim().to_owned(),
        posted.form.technician.trim().to_owned(),
    );
    let (what, done) = if !agent.is_empty() {
        let id = agent.clone();
        (
            format!("agent {agent}"),
            console
                .shared
                .store
                .run(move |db| db.revoke_agent(&id))
                .await,
        )
    } else if !tech.is_empty() {
        let name = tech.clone();
        (
            format!("technician {tech}"),
            console
                .shared
                .store
                .run(move |db| db.revoke_technician(&name))
                .await,
        )
    } else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "Name the agent or technician to revoke.",
        )
        .for_me(session.me())
        .into_response();
    };
    match done {
        Ok(true) => {
            session
                .audit(&console, "revoke", format!("revoked {what}"))
                .await;
            render(
                &console,
                session,
                vec![(
                    "Revoked".into(),
                    format!("{what}: disconnected within seconds and refused from now on"),
                )],
            )
            .await
        }
        Ok(false) => Problem::new(StatusCode::NOT_FOUND, format!("There is no {what}."))
            .for_me(session.me())
            .into_response(),
        Err(e) => view::failure(session.me(), &e.into()),
    }
}
