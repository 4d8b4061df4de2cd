//! A private session bus for the helper's tests: `dbus-daemon` on a socket in a temp
//! dir (open to every local uid, so a helper dropped to another user reaches it), and
//! python-dbusmock's notification daemon on it, which records every call and sends
//! the signals a user's click would.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_tests::Guard;
use zbus::zvariant::{OwnedValue, Value};

const NOTIFICATIONS: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";
const MOCK: &str = "org.freedesktop.DBus.Mock";

/// A session bus of our own. Dropping it stops the daemon.
#[derive(Debug)]
pub struct Bus {
    pub address: String,
    /// `XDG_RUNTIME_DIR` for programs on this bus.
    pub runtime: std::path::PathBuf,
    daemon: Option<Guard>,
}

impl Bus {
    /// Starts `dbus-daemon` with a config that lets every uid connect (a session bus
    /// normally admits its owner only), listening in `dir`. Services it starts on demand
    /// (the accessibility bus) keep their sockets in `dir/runtime`.
    pub fn start(dir: &Path) -> Result<Bus> {
        let runtime = dir.join("runtime");
        std::fs::create_dir_all(&runtime)?;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))?;
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <standard_session_servicedirs/>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.join("bus").display()
            ),
        )?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting dbus-daemon (Debian package dbus; .ci/test installs it)")?;
        let stdout = child.stdout.take().context("dbus-daemon's stdout")?;
        let daemon = Guard(child);
        let mut address = String::new();
        BufReader::new(stdout).read_line(&mut address)?;
        let address = address.trim().to_owned();
        if address.is_empty() {
            bail!("dbus-daemon printed no address");
        }
        Ok(Bus {
            address,
            runtime,
            daemon: Some(daemon),
        })
    }

    pub async fn connect(&self) -> Result<zbus::Connection> {
        Ok(zbus::connection::Builder::address(self.address.as_str())?
            .build()
            .await?)
    }

    /// Stops the bus, as when the user logs out.
    pub fn stop(&mut self) {
        self.daemon.take();
    }
}

/// python-dbusmock's `notification_daemon` template, announcing `body actions`.
#[derive(Debug)]
pub struct MockNotifications {
    _process: Guard,
    proxy: zbus::Proxy<'static>,
}

/// One `Notify` call as the server received it.
#[derive(Debug, Clone)]
pub struct Notified {
    pub replaces: u32,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
}

impl MockNotifications {
    pub async fn start(bus: &Bus) -> Result<MockNotifications> {
        let process = Guard(
            Command::new("/usr/bin/python3")
                .args(["-m", "dbusmock", "--template", "notification_daemon"])
                .args(["-p", r#"{"capabilities": "body actions"}"#])
                .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
                .stdout(Stdio::null())
                .spawn()
                .context("starting python3-dbusmock (Debian package python3-dbusmock)")?,
        );
        let conn = bus.connect().await?;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
        let bound = Instant::now() + Duration::from_secs(30);
        while !dbus.name_has_owner(NOTIFICATIONS.try_into()?).await? {
            if Instant::now() > bound {
                bail!("python3-dbusmock did not take {NOTIFICATIONS} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let proxy = zbus::Proxy::new_owned(conn, NOTIFICATIONS, PATH, MOCK).await?;
        Ok(MockNotifications {
            _process: process,
            proxy,
        })
    }

    /// Every call of `method` so far: (timestamp, arguments).
    async fn calls(&self, method: &str) -> Result<Vec<(u64, Vec<OwnedValue>)>> {
        Ok(self.proxy.call("GetMethodCalls", &(method,)).await?)
    }

    /// Every `Notify` so far, in order.
    pub async fn notified(&self) -> Result<Vec<Notified>> {
        let mut out = Vec::new();
        for (_, args) in self.calls("Notify").await? {
            let text = |i: usize| -> Result<String> {
                let v = args.get(i).context("a Notify argument is missing")?;
                Ok(String::try_from(v.try_clone()?)?)
            };
            let replaces = args
                .get(1)
                .map(|v| u32::try_from(v.try_clone()?))
                .transpose()?
                .unwrap_or(0);
            let actions = args
                .get(5)
                .map(|v| Vec::<String>::try_from(v.try_clone()?))
                .transpose()?
                .unwrap_or_default();
            out.push(Notified {
                replaces,
                summary: text(3)?,
                body: text(4)?,
                actions,
            });
        }
        Ok(out)
    }

    /// Waits for the `n`-th `Notify` (1-based) and returns it with the id the mock gave it
    /// (ids count up from 1 over the calls that replace nothing).
    pub async fn wait_notify(&self, n: usize) -> Result<(u32, Notified)> {
        let bound = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.notified().await?;
            if let Some(call) = all.get(n - 1) {
                let id = if call.replaces != 0 {
                    call.replaces
                } else {
                    let new = all.iter().take(n).filter(|c| c.replaces == 0).count();
                    u32::try_from(new)?
                };
                return Ok((id, call.clone()));
            }
            if Instant::now() > bound {
                bail!("no Notify call number {n} within 30 s; calls so far: {all:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the helper closed notification `id`.
    pub async fn wait_closed(&self, id: u32) -> Result<()> {
        let bound = Instant::now() + Duration::from_secs(30);
        loop {
            let closed = self.calls("CloseNotification").await?;
            if closed.iter().any(|(_, args)| {
                args.first().is_some_and(|v| {
                    matches!(**v, Value::U32(x) if x == id)
                        || matches!(**v, Value::I32(x) if u32::try_from(x).ok() == Some(id))
                })
            }) {
                return Ok(());
            }
            if Instant::now() > bound {
                bail!("notification {id} was not closed within 30 s: {closed:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The user clicks `action` on notification `id`.
    pub async fn click(&self, id: u32, action: &str) -> Result<()> {
        let args: Vec<Value<'_>> = vec![Value::U32(id), Value::from(action)];
        let _: () = self
            .proxy
            .call("EmitSignal", &(NOTIFICATIONS, "ActionInvoked", "us", args))
            .await?;
        Ok(())
    }
}
