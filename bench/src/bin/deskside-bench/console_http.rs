//! The console as a browser sees it, over HTTPS on one kept-alive connection: a technician
//! finishes the one-time setup link (password and TOTP), signs in, and pages are timed
//! from the request sent to the last byte of the body read.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use ureq::Agent;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::stats::Samples;

/// The session cookie the console sets on sign-in.
pub const SESSION_COOKIE: &str = "__Host-deskside";
/// The sign-in form's CSRF cookie.
const LOGIN_COOKIE: &str = "__Host-deskside-login";
/// The password the benchmark's technician chooses.
const PASSWORD: &str = "benchmark password, long enough";
/// A page served on loopback; generous for a busy machine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// TOTP step, as the console's authenticator setup says (RFC 6238 default).
const TOTP_STEP_SECS: u64 = 30;

/// A signed-in console client.
pub struct Console {
    agent: Agent,
    base: String,
    pub session: String,
}

/// An HTTPS client that trusts the controller's CA (its `ca.crt`) and follows no
/// redirects, so the sign-in's cookies can be read.
fn client(ca_pem: &[u8]) -> Result<Agent> {
    let ca = Certificate::from_pem(ca_pem).context("reading the controller's CA certificate")?;
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::from([ca]))
        .build();
    Ok(Agent::config_builder()
        .tls_config(tls)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .new_agent())
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie<B>(response: &ureq::http::Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?;
            let (k, value) = pair.split_once('=')?;
            (k.trim() == name).then(|| value.trim().to_owned())
        })
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let rest = text.get(from..)?;
    rest.get(..rest.find(end)?)
}

/// The current TOTP code for `secret` (base32), `ahead` steps from now.
fn code(secret: &str, account: &str, ahead: u64) -> Result<String> {
    let secret = totp_rs::Secret::try_from_base32(secret)
        .map_err(|e| anyhow::anyhow!("the setup page's TOTP key is not base32: {e:?}"))?;
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(TOTP_STEP_SECS)
        .with_secret(secret)
        .with_issuer(Some("Deskside"))
        .with_account_name(account)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot make a TOTP generator: {e:?}"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    Ok(totp.generate(now + ahead * TOTP_STEP_SECS).to_string())
}

impl Console {
    /// Follows the setup link (`https://HOST:PORT/setup/SECRET`) for `technician`, then
    /// signs in with the password and a TOTP code.
    pub fn sign_up_and_in(ca: &Path, link: &str, technician: &str) -> Result<Console> {
        let ca_pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let agent = client(&ca_pem)?;
        let base = link
            .find("/setup/")
            .and_then(|i| link.get(..i))
            .with_context(|| format!("not a setup link: {link}"))?
            .to_owned();
        let mut page = agent.get(link).call().context("opening the setup link")?;
        let html = page.body_mut().read_to_string()?;
        let secret = between(&html, "<code id=\"totp-secret\">", "</code>")
            .with_context(|| format!("no TOTP key on the setup page ({})", page.status()))?
            .to_owned();
        let form = [
            ("password", PASSWORD.to_owned()),
            ("confirm", PASSWORD.to_owned()),
            ("totp_secret", secret.clone()),
            ("code", code(&secret, technician, 0)?),
        ];
        let done = agent
            .post(link)
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))?;
        if !done.status().is_redirection() {
            bail!("the setup form was refused ({})", done.status());
        }
        let mut login = agent.get(&format!("{base}/login")).call()?;
        let csrf = set_cookie(&login, LOGIN_COOKIE).context("no sign-in cookie on /login")?;
        login.body_mut().read_to_string()?;
        // The setup used this step's code; a code is accepted once, so sign in with the
        // next step's (within the console's one step of skew).
        let form = [
            ("name", technician.to_owned()),
            ("password", PASSWORD.to_owned()),
            ("code", code(&secret, technician, 1)?),
            ("csrf", csrf.clone()),
            ("next", "/".to_owned()),
        ];
        let signed = agent
            .post(&format!("{base}/login"))
            .header("cookie", format!("{LOGIN_COOKIE}={csrf}"))
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))?;
        let session = set_cookie(&signed, SESSION_COOKIE)
            .with_context(|| format!("sign-in refused ({})", signed.status()))?;
        Ok(Console {
            agent,
            base,
            session,
        })
    }

    /// The console's `https://HOST:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// One signed-in GET of `path`: its time (request sent → body read) and body size.
    pub fn get(&self, path: &str) -> Result<(Duration, usize)> {
        let url = format!("{}{path}", self.base);
        let started = Instant::now();
        let mut response = self
            .agent
            .get(&url)
            .header("cookie", format!("{SESSION_COOKIE}={}", self.session))
            .call()
            .with_context(|| format!("GET {path}"))?;
        let body = response.body_mut().read_to_vec()?;
        let took = started.elapsed();
        if response.status() != 200 {
            bail!("GET {path}: {} instead of 200", response.status());
        }
        Ok((took, body.len()))
    }

    /// `runs` GETs of `path` after one not timed (the connection is then warm); the
    /// times and the page's size.
    pub fn time(&self, path: &str, runs: usize) -> Result<(Samples, usize)> {
        let (_, bytes) = self.get(path)?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            times.push(self.get(path)?.0);
        }
        Ok((Samples::new(times)?, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_text_between_markers() {
        let html = "<p>Key: <code id=\"totp-secret\">ABC234</code></p>";
        assert_eq!(
            between(html, "<code id=\"totp-secret\">", "</code>"),
            Some("ABC234")
        );
        assert_eq!(between(html, "<nope>", "</code>"), None);
    }

    #[test]
    fn codes_are_six_digits() -> Result<()> {
        let c = code("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "t", 0)?;
        assert_eq!(c.len(), 6);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
        Ok(())
    }
}
