//! Signing in and staying signed in: argon2id passwords, a TOTP second factor that is
//! always required, server-side sessions behind an `HttpOnly; Secure; SameSite=Strict`
//! cookie, a CSRF token on every change, and throttling that locks a login after
//! repeated failures.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use deskside_proto::msg::identity::Tier;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, Totp};
use tracing::{info, warn};

use super::Console;
use super::view::{self, Me, Problem};
use crate::clock::now_secs;
use crate::service::Principal;
use crate::store::{AuditLine, SignInState};

/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, used or not: a working day and then some.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins in a row that lock a login ...
pub const LOCK_AFTER_FAILURES: u64 = 5;
/// ... for this long.
pub const LOCK_FOR: Duration = Duration::from_secs(15 * 60);
/// Sign-in attempts one address may make per ten minutes, whatever the login:
/// guessing across many logins is slowed as much as guessing one.
pub const SIGN_IN_ATTEMPTS_PER_ADDRESS: u32 = 20;
const ADDRESS_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Addresses remembered by the throttle; past this the oldest windows are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 10_000;
/// Shortest password accepted at setup.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted: argon2 over megabytes is a denial of service.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// A form is a few fields; anything larger is not one of ours.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// The session cookie. `__Host-` makes the browser refuse it unless it is `Secure`, has
/// `Path=/` and no `Domain`: no other host or path can set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-deskside";
/// The sign-in form's CSRF cookie (there is no session yet to hold the token).
const LOGIN_COOKIE: &str = "__Host-deskside-login";

/// The TCP peer of a request, put there by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The client's address: the TCP peer, or behind the configured proxy the last address
/// it added to `X-Forwarded-For`.
pub fn client_address(console: &Console, parts: &Parts) -> IpAddr {
    let peer = parts
        .extensions
        .get::<Peer>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
    if console.proxy == Some(peer) {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(client) = forwarded {
            return client;
        }
    }
    peer
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// 32 random bytes, hex: session tokens, CSRF tokens, setup links.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash of nothing anyone knows, verified against when the login does not exist so an
/// unknown name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// The TOTP generator for a base32 secret: SHA-1, 6 digits, 30 s steps, one step of
/// skew, as every authenticator app expects.
pub fn totp(secret_base32: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_base32).ok()?;
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some("Deskside"))
        .with_account_name(account)
        .build()
        .ok()
}

/// A new random TOTP secret (160 bits), base32.
pub fn new_totp_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::from(bytes.to_vec()).to_base32()
}

/// Sign-in attempts per client address, in fixed windows.
#[derive(Debug, Default)]
pub struct AddressThrottle(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl AddressThrottle {
    /// Counts an attempt; `false` when the address has used up its window.
    fn attempt(&self, address: IpAddr, now: Instant) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TRACKED_ADDRESSES {
            seen.retain(|_, (start, _)| now.duration_since(*start) < ADDRESS_WINDOW);
        }
        if seen.len() >= MAX_TRACKED_ADDRESSES {
            // A flood from very many addresses: nobody new signs in until windows pass,
            // rather than the throttle growing without bound.
            return false;
        }
        let entry = seen.entry(address).or_insert((now, 0));
        if now.duration_since(entry.0) >= ADDRESS_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= SIGN_IN_ATTEMPTS_PER_ADDRESS
    }
}

/// A signed-in technician, from the session cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub admin: bool,
    pub csrf: String,
    pub token_sha256: String,
    pub address: IpAddr,
}

impl Session {
    pub fn me(&self) -> Me {
        Me {
            name: self.principal.name.clone(),
            tier: self.principal.tier.to_string(),
            admin: self.admin,
            csrf: self.csrf.clone(),
        }
    }

    /// Writes a line to the console's audit (sign-ins and admin actions).
    pub async fn audit(&self, console: &Console, action: &str, detail: String) {
        audit(console, &self.principal.name, action, detail, self.address).await;
    }
}

pub async fn audit(console: &Console, who: &str, action: &str, detail: String, address: IpAddr) {
    info!(technician = who, action, %detail, %address, "console audit");
    let line = AuditLine {
        at: now_secs(),
        technician: who.to_owned(),
        action: action.to_owned(),
        detail,
        address: address.to_string(),
    };
    if let Err(e) = console
        .shared
        .store
        .run(move |db| db.console_audit(&line))
        .await
    {
        warn!(error = %e, "writing the console audit failed");
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: Option<Duration>) -> String {
    let mut c = cookie::Cookie::build((name, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Strict);
    if let Some(age) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(
            i64::try_from(age.as_secs()).unwrap_or(i64::MAX),
        ));
    }
    c.build().to_string()
}

/// Where to send someone who is not signed in.
fn to_login(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if parts.method == axum::http::Method::GET && safe_next(&here) {
        let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
        Redirect::to(&format!("/login?next={next}")).into_response()
    } else {
        Redirect::to("/login").into_response()
    }
}

/// Only a path on this site: no scheme, no `//host`, no backslash tricks, and nothing
/// that could not stand in a `Location` header — printable ASCII only, so no tab or
/// newline either (browsers drop those from a URL, so `/<TAB>/evil.example` would
/// arrive as `//evil.example`).
fn safe_next(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && next.bytes().all(|b| b.is_ascii_graphic())
}

impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Session, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login(parts));
        };
        let token_sha256 = sha256_hex(token);
        let key = token_sha256.clone();
        let found = console
            .shared
            .store
            .run(move |db| db.console_session(&key, IDLE_TIMEOUT.as_secs(), now_secs()))
            .await
            .map_err(|e| view::internal(&e.to_string()))?;
        let Some(s) = found else {
            return Err(to_login(parts));
        };
        Ok(Session {
            principal: Principal {
                name: s.technician,
                tier: s.tier,
                certificate: None,
            },
            admin: s.admin,
            csrf: s.csrf,
            token_sha256,
            address: client_address(console, parts),
        })
    }
}

/// A change: the signed-in technician and their form, its CSRF token checked. A request
/// from another site carries neither the cookie (`SameSite=Strict`) nor the token; one
/// whose `Origin` names another site is refused before anything is read.
#[derive(Debug)]
pub struct Posted<T> {
    pub session: Session,
    pub form: T,
}

#[derive(Debug, Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// A cross-site request: its `Origin` is not this host.
fn foreign_origin(parts: &Parts) -> bool {
    let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin_host != host
}

impl<T: serde::de::DeserializeOwned + Send> FromRequest<Arc<Console>> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, console: &Arc<Console>) -> Result<Posted<T>, Response> {
        let (mut parts, body) = req.into_parts();
        if foreign_origin(&parts) {
            return Err(forbidden_change());
        }
        let session = Session::from_request_parts(&mut parts, console).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "That form is too large.")
                    .into_response()
            })?;
        let token: CsrfOnly =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| forbidden_change())?;
        if !same(&token.csrf, &session.csrf) {
            warn!(technician = %session.principal.name, "a change without the session's CSRF token was refused");
            return Err(forbidden_change());
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("That form could not be read: {e}."),
            )
            .into_response()
        })?;
        Ok(Posted { session, form })
    }
}

fn forbidden_change() -> Response {
    Problem::new(
        StatusCode::FORBIDDEN,
        "This change did not come from a console page (its security token is missing or wrong). Reload the page and try again.",
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    me: Option<Me>,
    csrf: String,
    next: String,
    message: Option<String>,
}

pub async fn login_page(axum::extract::Query(q): axum::extract::Query<LoginQuery>) -> Response {
    login_form(q.next.unwrap_or_default(), None, StatusCode::OK)
}

fn login_form(next: String, message: Option<String>, status: StatusCode) -> Response {
    let csrf = random_token();
    let next = if safe_next(&next) {
        next
    } else {
        "/".to_owned()
    };
    let page = LoginPage {
        me: None,
        csrf: csrf.clone(),
        next,
        message,
    };
    let mut response = view::render(&page);
    *response.status_mut() = status;
    if let Ok(v) = set_cookie(LOGIN_COOKIE, &csrf, None).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// Why a sign-in failed; the page says only "wrong", never which part.
enum Denied {
    Wrong,
    Locked { until: u64 },
    Throttled,
}

pub async fn login(State(console): State<Arc<Console>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let address = client_address(&console, &parts);
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "That form is too large.")
            .into_response();
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&bytes) else {
        return login_form(
            String::new(),
            Some("That form could not be read.".into()),
            StatusCode::BAD_REQUEST,
        );
    };
    let expected = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or("");
    if foreign_origin(&parts) || expected.is_empty() || !same(expected, &form.csrf) {
        return forbidden_change();
    }
    let outcome = check(&console, &form, address).await;
    let name = form.name.clone();
    match outcome {
        Ok((tier, admin)) => {
            let token = random_token();
            let csrf = random_token();
            let now = now_secs();
            let (key, who, csrf2, at) =
                (sha256_hex(&token), name.clone(), csrf, address.to_string());
            let created = console
                .shared
                .store
                .run(move |db| {
                    db.console_session_create(
                        &key,
                        &who,
                        &csrf2,
                        &at,
                        now,
                        now + SESSION_LIFETIME.as_secs(),
                    )
                })
                .await;
            if let Err(e) = created {
                return view::internal(&e.to_string());
            }
            audit(
                &console,
                &name,
                "sign_in",
                format!("signed in ({tier}{})", if admin { ", admin" } else { "" }),
                address,
            )
            .await;
            let next = if safe_next(&form.next) {
                form.next
            } else {
                "/".to_owned()
            };
            let mut response = Redirect::to(&next).into_response();
            for c in [
                set_cookie(SESSION_COOKIE, &token, Some(SESSION_LIFETIME)),
                set_cookie(LOGIN_COOKIE, "", Some(Duration::ZERO)),
            ] {
                if let Ok(v) = c.parse() {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Err(denied) => {
            let (message, status) = match denied {
                Denied::Wrong => (
                    "Wrong name, password or code.".to_owned(),
                    StatusCode::UNAUTHORIZED,
                ),
                Denied::Locked { until } => (
                    format!(
                        "Too many failed sign-ins: this login is locked for {} minutes. An admin can reset it with `deskside console add`.",
                        until.saturating_sub(now_secs()).div_ceil(60).max(1)
                    ),
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                Denied::Throttled => (
                    "Too many sign-in attempts from this address; wait ten minutes.".to_owned(),
                    StatusCode::TOO_MANY_REQUESTS,
                ),
            };
            audit(&console, &name, "sign_in_failed", message.clone(), address).await;
            login_form(form.next, Some(message), status)
        }
    }
}

/// Checks a sign-in: address throttle, lock, password, then TOTP (a code is good once).
async fn check(
    console: &Console,
    form: &LoginForm,
    address: IpAddr,
) -> Result<(Tier, bool), Denied> {
    if !console.sign_ins.attempt(address, Instant::now()) {
        return Err(Denied::Throttled);
    }
    let name = form.name.clone();
    let login = console
        .shared
        .store
        .run(move |db| db.console_login(&name))
        .await
        .ok()
        .flatten();
    let now = now_secs();
    if let Some(until) = login
        .as_ref()
        .and_then(|l| l.locked_until)
        .filter(|u| *u > now)
    {
        return Err(Denied::Locked { until });
    }
    let hash = login
        .as_ref()
        .and_then(|l| l.password_hash.clone())
        .unwrap_or_else(|| decoy_hash().to_owned());
    let password = form.password.clone();
    let password_ok = password.len() <= MAX_PASSWORD_BYTES
        && tokio::task::spawn_blocking(move || password_matches(&password, &hash))
            .await
            .unwrap_or(false);
    let Some(login) = login.filter(|l| !l.revoked) else {
        return Err(Denied::Wrong);
    };
    let step = login
        .totp_secret
        .as_deref()
        .and_then(|s| totp(s, &login.technician))
        .and_then(|t| t.check(form.code.trim(), now))
        .filter(|step| login.last_totp_step.is_none_or(|last| *step > last));
    match (password_ok, step) {
        (true, Some(step)) => {
            let name = login.technician.clone();
            let _ = console
                .shared
                .store
                .run(move |db| db.console_sign_in_ok(&name, step))
                .await;
            Ok((login.tier, login.admin))
        }
        _ => {
            let name = login.technician.clone();
            let state = console
                .shared
                .store
                .run(move |db| {
                    db.console_sign_in_failed(
                        &name,
                        LOCK_AFTER_FAILURES,
                        LOCK_FOR.as_secs(),
                        now_secs(),
                    )
                })
                .await;
            match state {
                Ok(SignInState::Locked { until }) => Err(Denied::Locked { until }),
                _ => Err(Denied::Wrong),
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Nothing {}

pub async fn logout(State(console): State<Arc<Console>>, posted: Posted<Nothing>) -> Response {
    let key = posted.session.token_sha256.clone();
    let _ = console
        .shared
        .store
        .run(move |db| db.console_session_end(&key))
        .await;
    posted
        .session
        .audit(&console, "sign_out", "signed out".into())
        .await;
    let mut response = Redirect::to("/login").into_response();
    if let Ok(v) = set_cookie(SESSION_COOKIE, "", Some(Duration::ZERO)).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() -> anyhow::Result<()> {
        let hash = hash_password("correct horse battery").map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("correct horse batterx", &hash));
        assert!(!password_matches("x", "not a hash"));
        Ok(())
    }

    #[test]
    fn a_totp_code_checks_within_one_step_of_skew() -> anyhow::Result<()> {
        let secret = new_totp_secret();
        let t = totp(&secret, "ana").ok_or(anyhow::anyhow!("totp"))?;
        let code = t.generate(1_000_000).to_string();
        assert_eq!(t.check(&code, 1_000_000), Some(1_000_000 / 30));
        assert!(t.check(&code, 1_000_030).is_some());
        assert!(t.check(&code, 1_000_120).is_none());
        assert!(totp("not base32!", "ana").is_none());
        Ok(())
    }

    #[test]
    fn next_only_goes_to_a_path_on_this_site() {
        assert!(safe_next("/agents?q=x"));
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "agents",
            "/a\r\nSet-Cookie: x=1",
            "/é",
        ] {
            assert!(!safe_next(bad), "{bad}");
        }
    }

    #[test]
    fn the_address_throttle_counts_per_window() {
        let t = AddressThrottle::default();
        let (a, now) = (IpAddr::from([10, 0, 0, 1]), Instant::now());
        for _ in 0..SIGN_IN_ATTEMPTS_PER_ADDRESS {
            assert!(t.attempt(a, now));
        }
        assert!(!t.attempt(a, now));
        assert!(t.attempt(IpAddr::from([10, 0, 0, 2]), now));
        assert!(t.attempt(a, now + ADDRESS_WINDOW));
    }
}
