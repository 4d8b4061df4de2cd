//! Time to first render in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver), signed in with the console's session cookie, reading the
//! page's own Paint Timing and Navigation Timing entries.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder};
use serde::Deserialize;

use crate::console_http::SESSION_COOKIE;
use crate::sshd::which;

/// chromedriver answers `/status` well within this on a busy machine.
const DRIVER_READY_WITHIN: Duration = Duration::from_secs(30);
/// Paint entries are recorded by the time the load event fires, but allow a moment.
const PAINT_WAIT: Duration = Duration::from_secs(5);

/// What one navigation's timing entries say, in milliseconds from navigation start.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Render {
    /// `first-contentful-paint` from `performance.getEntriesByType('paint')`.
    pub fcp: f64,
    /// Navigation Timing: the last byte of the document received.
    pub response_end: f64,
    pub dom_content_loaded: f64,
    pub load: f64,
}

/// The figures of one page over several navigations.
#[derive(Debug, Clone)]
pub struct Renders(pub Vec<Render>);

impl Renders {
    /// The median of one figure.
    pub fn p50(&self, figure: impl Fn(&Render) -> f64) -> f64 {
        let mut v: Vec<f64> = self.0.iter().map(figure).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
    }
}

/// A chromedriver process on a free loopback port, its browsers' scratch in `tmp`.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TIMING: &str = "const nav = performance.getEntriesByType('navigation')[0];
const fcp = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
if (!nav || !fcp || nav.loadEventEnd === 0) { return null; }
return { fcp: fcp.startTime, response_end: nav.responseEnd,
         dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd };";

async fn start_driver(tmp: &Path) -> Result<(Driver, String)> {
    let Some(exe) = which("chromedriver") else {
        bail!("chromedriver is not installed (Debian: chromium chromium-driver)");
    };
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting chromedriver")?;
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    let started = Instant::now();
    loop {
        let probe = status.clone();
        let ready = tokio::task::spawn_blocking(move || ureq::get(&probe).call().is_ok()).await?;
        if ready {
            return Ok((driver, url));
        }
        if started.elapsed() > DRIVER_READY_WITHIN {
            bail!("chromedriver did not answer within {DRIVER_READY_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn browser(driver: &str) -> Result<Client> {
    let caps = serde_json::json!({
        "browserName": "chrome",
        // The console's certificate is issued by the controller's own CA.
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage"],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        bail!("capabilities are a JSON object");
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .context("starting headless Chromium through chromedriver")
}

/// One navigation to `url`: its timing entries once the page has loaded and painted.
async fn navigate(client: &Client, url: &str) -> Result<Render> {
    client.goto(url).await?;
    let started = Instant::now();
    loop {
        let value = client.execute(TIMING, Vec::new()).await?;
        if !value.is_null() {
            return serde_json::from_value(value).context("reading the timing entries");
        }
        if started.elapsed() > PAINT_WAIT {
            let title = client.title().await.unwrap_or_default();
            bail!("{url} (title {title:?}) recorded no first-contentful-paint");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Signs in with `session` on the console at `base`, then navigates to each of `paths`
/// `runs` times after one untimed visit; the renders per path.
pub async fn first_render(
    base: &str,
    session: &str,
    paths: &[&str],
    runs: usize,
) -> Result<Vec<Renders>> {
    let tmp = tempfile::Builder::new()
        .prefix("deskside-bench-chromium-")
        .tempdir()?;
    let (_driver, url) = start_driver(tmp.path()).await?;
    let client = browser(&url).await?;
    let result = async {
        // A cookie is set for the page's origin: open the sign-in page first.
        client.goto(&format!("{base}/login")).await?;
        let title = client.title().await?;
        if !title.contains("Deskside") {
            bail!("the console's sign-in page did not load (title {title:?})");
        }
        // WebDriver's Add Cookie (as fantoccini sends it, `domain: null`) is refused by
        // chromedriver; the page's own `document.cookie` sets the same host-only cookie
        // (not HttpOnly, which only hides it from scripts).
        client
            .execute(
                "document.cookie = arguments[0] + '=' + arguments[1] + '; Secure; Path=/; SameSite=Strict';",
                vec![SESSION_COOKIE.into(), session.into()],
            )
            .await?;
        let mut all = Vec::new();
        for path in paths {
            let url = format!("{base}{path}");
            navigate(&client, &url).await?;
            let mut renders = Vec::with_capacity(runs);
            for _ in 0..runs {
                renders.push(navigate(&client, &url).await?);
            }
            all.push(Renders(renders));
        }
        Ok(all)
    }
    .await;
    let _ = client.close().await;
    result
}
