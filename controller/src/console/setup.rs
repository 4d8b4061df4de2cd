//! Console logins: the admin makes one for a technician (`deskside console add`), which
//! prints a one-time setup link; on first visit the technician chooses a password and
//! enrolls an authenticator app from a QR code, proving it with a first code.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;

use super::Console;
use super::auth::{
    self, MAX_FORM_BYTES, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, Peer, hash_password,
    new_totp_secret, random_token, sha256_hex, totp,
};
use super::view::{self, Me, Problem};
use crate::clock::now_secs;
use crate::store::{Store, StoreError};

/// How long a setup link works.
pub const SETUP_LINK_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Makes (or resets) `technician`'s console login and returns the path of its one-time
/// setup link (`/setup/…`); append it to the console's URL.
pub fn add_login(store: &Store, technician: &str, admin: bool) -> Result<String, StoreError> {
    let secret = random_token();
    let now = now_secs();
    let hashed = sha256_hex(&secret);
    store.blocking(|db| {
        db.console_add(
            technician,
            admin,
            &hashed,
            now + SETUP_LINK_VALIDITY.as_secs(),
            now,
        )
    })?;
    Ok(format!("/setup/{secret}"))
}

#[derive(askama::Template)]
#[template(path = "console/setup.html")]
struct SetupPage {
    me: Option<Me>,
    technician: String,
    link: String,
    totp_secret: String,
    qr_data_uri: String,
    message: Option<String>,
}

async fn technician_of(console: &Console, secret: &str) -> Option<String> {
    let hashed = sha256_hex(secret);
    console
        .shared
        .store
        .run(move |db| db.console_setup(&hashed, now_secs()))
        .await
        .ok()
        .flatten()
}

fn gone() -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "This setup link is used up or expired. Ask the admin for a new one (`deskside console add`).",
    )
    .into_response()
}

fn setup_page(
    technician: String,
    link: String,
    totp_secret: String,
    message: Option<String>,
) -> Response {
    let qr = totp(&totp_secret, &technician)
        .and_then(|t| t.to_url().ok())
        .and_then(|url| qrcode::QrCode::new(url.as_bytes()).ok())
        .map(|code| {
            code.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .build()
        })
        .unwrap_or_default();
    let page = SetupPage {
        me: None,
        technician,
        link,
        totp_secret,
        qr_data_uri: format!(
            "data:image/svg+xml;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(qr)
        ),
        message,
    };
    view::render(&page)
}

pub async fn page(State(console): State<Arc<Console>>, Path(secret): Path<String>) -> Response {
    match technician_of(&console, &secret).await {
        Some(technician) => setup_page(
            technician,
            format!("/setup/{secret}"),
            new_totp_secret(),
            None,
        ),
        None => gone(),
    }
}

#[derive(Debug, Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    totp_secret: String,
    #[serde(default)]
    code: String,
}

pub async fn finish(
    State(console): State<Arc<Console>>,
    Path(secret): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let address = parts
        .extensions
        .get::<Peer>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "That form is too large.")
            .into_response();
    };
    let Some(technician) = technician_of(&console, &secret).await else {
        return gone();
    };
    let link = format!("/setup/{secret}");
    let form: SetupForm = match serde_urlencoded::from_bytes(&bytes) {
        Ok(f) => f,
        Err(_) => {
            return setup_page(
                technician,
                link,
                new_totp_secret(),
                Some("That form could not be read.".into()),
            );
        }
    };
    let again = |message: &str| {
        let mut r = setup_page(
            technician.clone(),
            link.clone(),
            form.totp_secret.clone(),
            Some(message.to_owned()),
        );
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    };
    if form.password.chars().count() < MIN_PASSWORD_CHARS
        || form.password.len() > MAX_PASSWORD_BYTES
    {
        return again(&format!(
            "Choose a password of at least {MIN_PASSWORD_CHARS} characters."
        ));
    }
    if form.password != form.confirm {
        return again("The two passwords differ.");
    }
    let Some(generator) = totp(&form.totp_secret, &technician) else {
        return setup_page(
            technician.clone(),
            link.clone(),
            new_totp_secret(),
            Some("Scan the new code below.".into()),
        );
    };
    let now = now_secs();
    let Some(step) = generator.check(form.code.trim(), now) else {
        return again(
            "That code does not match: check the authenticator app's clock and enter the current code.",
        );
    };
    let password = form.password.clone();
    let Ok(Ok(hash)) = tokio::task::spawn_blocking(move || hash_password(&password)).await else {
        return view::internal("hashing the password failed");
    };
    let (hashed, totp_secret) = (sha256_hex(&secret), form.totp_secret.clone());
    let done = console
        .shared
        .store
        .run(move |db| db.console_finish_setup(&hashed, &hash, &totp_secret, step, now))
        .await;
    match done {
        Ok(Some(name)) => {
            auth::audit(
                &console,
                &name,
                "console_setup",
                "chose a password and enrolled TOTP".into(),
                address,
            )
            .await;
            Redirect::to("/login").into_response()
        }
        Ok(None) => gone(),
        Err(e) => view::internal(&e.to_string()),
    }
}
