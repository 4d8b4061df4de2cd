//! The test's own display and what a screen reader sees on it: an Xvfb server, and the
//! window's accessibility tree read and driven through AT-SPI (`atspi.py`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_tests::Guard;

use crate::bus::Bus;

/// What the accessibility tree says, one node per label, button or box.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Node {
    pub(crate) role: String,
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) focused: bool,
}

/// The window's process name, as AT-SPI lists applications.
const APP: &str = "deskside-desktop-window";

/// An X server of our own; `display` is `:N`.
pub(crate) struct Display {
    pub(crate) display: String,
    _server: Guard,
}

pub(crate) fn start_x() -> Result<Display> {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "800x600x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting Xvfb (Debian package xvfb)")?;
    let stdout = child.stdout.take().context("Xvfb's stdout")?;
    let server = Guard(child);
    let mut n = String::new();
    BufReader::new(stdout).read_line(&mut n)?;
    let n = n.trim();
    if n.is_empty() {
        bail!("Xvfb printed no display number");
    }
    Ok(Display {
        display: format!(":{n}"),
        _server: server,
    })
}

pub(crate) struct Screen<'a> {
    pub(crate) bus: &'a Bus,
    pub(crate) x: &'a Display,
    pub(crate) script: PathBuf,
}

impl Screen<'_> {
    fn python(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("/usr/bin/python3")
            .arg(&self.script)
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus.address)
            .env("XDG_RUNTIME_DIR", &self.bus.runtime)
            .env("DISPLAY", &self.x.display)
            .output()
            .context("running the AT-SPI driver (python3-pyatspi)")?;
        if !out.status.success() {
            bail!(
                "atspi.py {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the window shows every one of `texts` (in a label or a button).
    pub(crate) async fn wait_for(&self, texts: &[&str]) -> Result<Vec<Node>> {
        let bound = Instant::now() + Duration::from_secs(30);
        loop {
            let nodes: Vec<Node> = serde_json::from_str(&self.python(&["dump", APP])?)?;
            let shows = |t: &&str| nodes.iter().any(|n| n.text.contains(t) || n.name == *t);
            if texts.iter().all(shows) {
                return Ok(nodes);
            }
            if Instant::now() > bound {
                bail!("the window did not show {texts:?} within 30 s: {nodes:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) fn press(&self, button: &str) -> Result<()> {
        self.python(&["press", APP, button]).map(drop)
    }

    /// Types `key` (xdotool's names) into the focused window.
    pub(crate) fn key(&self, key: &str) -> Result<()> {
        let status = Command::new("xdotool")
            .args(["key", key])
            .env("DISPLAY", &self.x.display)
            .status()
            .context("running xdotool (Debian package xdotool)")?;
        if !status.success() {
            bail!("xdotool key {key}: {status}");
        }
        Ok(())
    }

    /// Types `text` (xdotool) into the focused control.
    pub(crate) fn type_text(&self, text: &str) -> Result<()> {
        let status = Command::new("xdotool")
            .args(["type", "--delay", "20", text])
            .env("DISPLAY", &self.x.display)
            .status()
            .context("running xdotool (Debian package xdotool)")?;
        if !status.success() {
            bail!("xdotool type: {status}");
        }
        Ok(())
    }

    /// `import -window root` into target/desktop-screens/NAME.png.
    pub(crate) fn shot(&self, name: &str) -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/desktop-screens");
        std::fs::create_dir_all(&dir)?;
        let status = Command::new("import")
            .args(["-display", &self.x.display, "-window", "root"])
            .arg(dir.join(format!("{name}.png")))
            .status()
            .context("running import (Debian package imagemagick)")?;
        if !status.success() {
            bail!("import {name}: {status}");
        }
        Ok(())
    }
}
