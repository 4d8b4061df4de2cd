//! The web console seen from a test: plain HTTPS requests to it (trusting the test
//! controller's CA, no redirects followed, cookies by hand), signing in with password and
//! TOTP as a browser would, and TOTP codes computed the way an authenticator app does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Cluster;

/// Cookie and form-field names the console uses.
pub const SESSION_COOKIE: &str = "__Host-deskside";
pub const LOGIN_COOKIE: &str = "__Host-deskside-login";

/// A request gets this long (a bundle download builds the bundle first).
const REQUEST_WITHIN: Duration = Duration::from_secs(60);

/// One HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Every `Set-Cookie` header, whole.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// The value `Set-Cookie` gives `name`, if it sets it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
    }
}

/// HTTPS to one console.
#[derive(Clone)]
pub struct Https {
    pub addr: SocketAddr,
    tls: TlsConnector,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https").field("addr", &self.addr).finish()
    }
}

impl Https {
    /// A client for `cluster`'s console, trusting only the controller's CA.
    pub fn new(cluster: &Cluster) -> Result<Https> {
        let addr = cluster.console_addr()?;
        let ca = std::fs::read(cluster.data.root().join("ca.crt"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Https {
            addr,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// One request on a fresh connection; `headers` are added as given.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> Result<Reply> {
        tokio::time::timeout(
            REQUEST_WITHIN,
            self.request_now(method, path, headers, body),
        )
        .await
        .with_context(|| format!("{method} {path}: no answer within {REQUEST_WITHIN:?}"))?
    }

    async fn request_now(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> Result<Reply> {
        let tcp = TcpStream::connect(self.addr).await?;
        // The certificate names localhost and the loopback addresses.
        let tls = self
            .tls
            .connect(ServerName::try_from("localhost")?, tcp)
            .await
            .context("TLS to the console")?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if body.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes().to_vec();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// GET with the session cookie (if any).
    pub async fn get(&self, path: &str, session: Option<&str>) -> Result<Reply> {
        let headers: Vec<(&str, String)> = session
            .map(|s| vec![("cookie", format!("{SESSION_COOKIE}={s}"))])
            .unwrap_or_default();
        self.request("GET", path, &headers, None).await
    }

    /// POST a form with these headers.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        form: &[(&str, &str)],
    ) -> Result<Reply> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.request("POST", path, headers, Some(body)).await
    }

    /// Signs in through the real form: fetches it (its CSRF cookie and field), posts name,
    /// password and code. Returns the reply (a redirect with the session cookie when it
    /// worked).
    pub async fn sign_in(&self, name: &str, password: &str, code: &str) -> Result<Reply> {
        self.sign_in_to(name, password, code, "/").await
    }

    /// [`Https::sign_in`], asking to be sent to `next` afterwards.
    pub async fn sign_in_to(
        &self,
        name: &str,
        password: &str,
        code: &str,
        next: &str,
    ) -> Result<Reply> {
        let form = self.get("/login", None).await?;
        let login = form
            .cookie(LOGIN_COOKIE)
            .context("the sign-in page set no CSRF cookie")?;
        let csrf = csrf_field(&form.text()).context("the sign-in page has no CSRF field")?;
        self.post(
            "/login",
            &[("cookie", format!("{LOGIN_COOKIE}={login}"))],
            &[
                ("csrf", &csrf),
                ("next", next),
                ("name", name),
                ("password", password),
                ("code", code),
            ],
        )
        .await
    }

    /// Signs in and returns the session cookie's value, or fails with the page's answer.
    pub async fn session(&self, name: &str, password: &str, code: &str) -> Result<String> {
        let reply = self.sign_in(name, password, code).await?;
        match reply.cookie(SESSION_COOKIE).filter(|c| !c.is_empty()) {
            Some(c) if reply.status == 303 => Ok(c),
            _ => bail!(
                "signing in as {name} failed: {} {}",
                reply.status,
                reply.text()
            ),
        }
    }

    /// Walks a one-time setup link as a technician's browser would: reads the TOTP key
    /// off the page, chooses `password`, proves the key with its current code. Returns
    /// the key.
    pub async fn set_up(&self, link: &str, password: &str) -> Result<String> {
        let page = self.get(link, None).await?;
        if page.status != 200 {
            bail!("setup link {link}: {} {}", page.status, page.text());
        }
        let html = page.text();
        let secret = between(&html, "id=\"totp-secret\">", "<")
            .context("the setup page shows no TOTP key")?
            .to_owned();
        let code = totp_code(&secret, 0)?;
        let done = self
            .post(
                link,
                &[],
                &[
                    ("password", password),
                    ("confirm", password),
                    ("totp_secret", &secret),
                    ("code", &code),
                ],
            )
            .await?;
        if done.status != 303 {
            bail!("finishing setup: {} {}", done.status, done.text());
        }
        Ok(secret)
    }
}

/// The first `name="csrf" value="…"` of a page.
pub fn csrf_field(html: &str) -> Option<String> {
    between(html, "name=\"csrf\" value=\"", "\"").map(str::to_owned)
}

/// The text between the first `start` and the next `end`.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let rest = text.get(from..)?;
    rest.get(..rest.find(end)?)
}

/// The code an authenticator app shows for the base32 `secret` (SHA-1, 6 digits, 30 s),
/// `steps_ahead` steps from now. The console accepts one step of clock skew and each
/// step once: a test that signs in right after setup (which used the current step)
/// gives the next step's code, as the app would show it a few seconds later.
pub fn totp_code(secret: &str, steps_ahead: u64) -> Result<String> {
    let bytes = totp_rs::Secret::try_from_base32(secret)
        .map_err(|e| anyhow::anyhow!("the TOTP key {secret:?} is not base32: {e:?}"))?;
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(bytes)
        .build()
        .map_err(|e| anyhow::anyhow!("building a TOTP generator: {e:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    Ok(totp.generate(now + 30 * steps_ahead).to_string())
}
