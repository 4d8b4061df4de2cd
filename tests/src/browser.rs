//! A real browser for the web console's tests: Debian's Chromium, headless, driven
//! through `chromedriver` (WebDriver) with fantoccini. One driver per test binary; its
//! process group (the driver and the browsers it started) is killed when the harness is
//! dropped, and the browsers' profiles live in a scratch directory removed with it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::Guard;

/// Where Debian's packages put the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The driver answers within a second or two; a busy two-core machine gets more.
const DRIVER_READY_WITHIN: Duration = Duration::from_secs(30);
/// The browser window: a laptop screen.
const WINDOW: (u32, u32) = (1280, 900);
/// Full-page screenshots stop here.
const MAX_SCREENSHOT_HEIGHT: u32 = 6000;
/// How long a page element may take to appear or change (live updates included).
pub const PAGE_WITHIN: Duration = Duration::from_secs(30);

/// The error when the browser is not installed: what to install. CI installs both, so a
/// missing browser fails the console tests loudly, never skips them.
pub fn require_browser() -> Result<()> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "the web console tests drive a real Chromium, and {} missing. Install Debian's \
         browser and its WebDriver as root: `apt-get install --no-install-recommends \
         chromium chromium-driver` (.ci/test does), then rerun the tests.",
        if missing.len() == 1 {
            format!("{} is", missing.join(""))
        } else {
            format!("{} are", missing.join(" and "))
        }
    )
}

/// A running chromedriver and a headless Chromium session on it.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    /// Screenshots go here (`target/console-screens`).
    pub screens: PathBuf,
    // Dropped in this order: the driver's process group, then its scratch directory.
    _driver: DriverGroup,
    _scratch: tempfile::TempDir,
}

/// The driver, started in its own process group so the browsers it starts die with it.
#[derive(Debug)]
struct DriverGroup(Guard);

impl Drop for DriverGroup {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.0.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a browser session that
    /// accepts the console's certificate (issued by the test controller's own CA).
    pub async fn start() -> Result<Browser> {
        require_browser()?;
        let scratch = tempfile::Builder::new()
            .prefix("deskside-browser-")
            .tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .env("TMPDIR", scratch.path())
                .env("HOME", scratch.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {CHROMEDRIVER}"))?
        };
        let driver = DriverGroup(Guard(child));
        let at = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&at, Duration::from_millis(200)).is_err() {
            if start.elapsed() > DRIVER_READY_WITHIN {
                bail!("chromedriver did not listen on {at} within {DRIVER_READY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1280,900"],
            },
            "acceptInsecureCerts": true,
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            bail!("capabilities are a JSON object");
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{at}"))
            .await
            .context("opening a Chromium session through chromedriver")?;
        let screens = target_dir()?.join("console-screens");
        std::fs::create_dir_all(&screens)?;
        Ok(Browser {
            client,
            screens,
            _driver: driver,
            _scratch: scratch,
        })
    }

    /// Ends the browser session (the browser quits), then the driver.
    pub async fn close(self) -> Result<()> {
        let closed = self.client.clone().close().await;
        drop(self);
        Ok(closed?)
    }

    /// Writes a screenshot of the whole page (the window grown to its height, up to
    /// 6000 pixels) as `target/console-screens/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await?
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .unwrap_or(WINDOW.1)
            .clamp(WINDOW.1, MAX_SCREENSHOT_HEIGHT);
        self.client.set_window_size(WINDOW.0, height + 100).await?;
        let png = self.client.screenshot().await;
        self.client.set_window_size(WINDOW.0, WINDOW.1).await?;
        let path = self.screens.join(format!("{name}.png"));
        std::fs::write(&path, png?)?;
        Ok(path)
    }

    /// Elements that stick out past the right edge of the window (a page that scrolls
    /// sideways), as `tag#id.class` with their right edge.
    pub async fn too_wide(&self) -> Result<Vec<String>> {
        let found = self
            .client
            .execute(
                "const w = document.documentElement.clientWidth; const out = [];\n\
                 for (const el of document.querySelectorAll('main *')) {\n\
                   const r = el.getBoundingClientRect();\n\
                   if (r.right > w + 1 && r.width > 0) out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + String(el.className).replace(/ /g, '.') : '') + ' right=' + Math.round(r.right));\n\
                 }\n\
                 return out;",
                vec![],
            )
            .await?;
        Ok(serde_json::from_value(found)?)
    }

    /// The text of the element `css`, waiting for it to appear.
    pub async fn text(&self, css: &str) -> Result<String> {
        let el = self.element(css).await?;
        Ok(el.text().await?)
    }

    /// Waits until the element `css`'s text satisfies `done`; returns that text.
    pub async fn text_until(&self, css: &str, done: impl Fn(&str) -> bool) -> Result<String> {
        let start = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if done(&text) {
                return Ok(text);
            }
            if start.elapsed() > PAGE_WITHIN {
                bail!(
                    "{css} on {} still reads {text:?} after {PAGE_WITHIN:?}",
                    self.here().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the field `css` (cleared first).
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let el = self.element(css).await?;
        el.clear().await?;
        el.send_keys(text).await?;
        Ok(())
    }

    /// Clicks the element `css`.
    pub async fn click(&self, css: &str) -> Result<()> {
        let el = self.element(css).await?;
        el.click().await?;
        Ok(())
    }

    /// The current URL's path (and query).
    pub async fn path(&self) -> Result<String> {
        let url = self.client.current_url().await?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }

    /// Waits until the browser is on a path for which `done` holds.
    pub async fn path_until(&self, done: impl Fn(&str) -> bool) -> Result<String> {
        let start = Instant::now();
        loop {
            let path = self.path().await?;
            if done(&path) {
                return Ok(path);
            }
            if start.elapsed() > PAGE_WITHIN {
                let shows = match self.client.find(Locator::Css("main")).await {
                    Ok(main) => main.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                bail!("the browser is still on {path} after {PAGE_WITHIN:?}, showing:\n{shows}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page follows the live stream `url` (the console lists the streams
    /// it has open in `<body data-live>`), so what happens next reaches the page.
    pub async fn live(&self, url: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            let open = self
                .client
                .execute("return document.body.dataset.live || '';", vec![])
                .await?;
            let open = open.as_str().unwrap_or_default();
            if open.split(' ').any(|s| s == url) {
                return Ok(());
            }
            if start.elapsed() > PAGE_WITHIN {
                bail!(
                    "{} did not open the live stream {url} within {PAGE_WITHIN:?} (open: {open:?})",
                    self.here().await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text of an open JavaScript dialog (`alert(…)`), if one is open.
    pub async fn dialog(&self) -> Option<String> {
        self.client.get_alert_text().await.ok()
    }

    /// The element `css`, waiting for it to appear.
    pub async fn element(&self, css: &str) -> Result<fantoccini::elements::Element> {
        match self
            .client
            .wait()
            .at_most(PAGE_WITHIN)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => Ok(el),
            Err(e) => Err(anyhow::Error::from(e)
                .context(format!("waiting for {css} on {}", self.here().await))),
        }
    }

    /// Where the browser is, for error messages.
    async fn here(&self) -> String {
        self.client
            .current_url()
            .await
            .map_or_else(|e| format!("(unknown page: {e})"), |u| u.to_string())
    }
}

/// `target/` of this build (the test binary is `target/<profile>/deps/NAME`).
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .context("locating target/ from the test binary's path")
}
