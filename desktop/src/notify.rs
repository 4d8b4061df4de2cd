//! The freedesktop Notifications service on the session bus (the Desktop Notifications
//! Specification 1.2): raise a notification with actions, close it, and hear which
//! action the user chose or that it was closed.

use std::collections::HashMap;

use zbus::zvariant::Value;

/// Action keys the helper's notifications carry; the server sends one back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Details,
    End,
}

impl Action {
    pub fn key(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Details => "details",
            Action::End => "end",
        }
    }

    pub fn from_key(key: &str) -> Option<Action> {
        [Action::Allow, Action::Deny, Action::Details, Action::End]
            .into_iter()
            .find(|a| a.key() == key)
    }
}

/// Why the server says a notification closed (`NotificationClosed`'s reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Expired,
    /// The user dismissed it: for a prompt, that is a no.
    Dismissed,
    /// We closed it (`CloseNotification`).
    ByCall,
    Undefined,
}

impl Closed {
    pub fn from_reason(reason: u32) -> Closed {
        match reason {
            1 => Closed::Expired,
            2 => Closed::Dismissed,
            3 => Closed::ByCall,
            _ => Closed::Undefined,
        }
    }
}

/// Urgency hint values (the specification's byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Normal = 1,
    /// Critical notifications stay until acted on, on servers that honour it.
    Critical = 2,
}

#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
pub trait Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;

    fn close_notification(&self, id: u32) -> zbus::Result<()>;

    fn get_capabilities(&self) -> zbus::Result<Vec<String>>;

    #[zbus(signal)]
    fn action_invoked(&self, id: u32, action_key: String) -> zbus::Result<()>;

    #[zbus(signal)]
    fn notification_closed(&self, id: u32, reason: u32) -> zbus::Result<()>;
}

/// One notification to raise.
#[derive(Debug, Clone)]
pub struct Note<'a> {
    /// The id of the notification this one updates in place (0: a new one).
    pub replaces: u32,
    pub summary: &'a str,
    pub body: &'a str,
    /// (action, label) pairs, in the order the server shows them.
    pub actions: &'a [(Action, &'a str)],
    pub urgency: Urgency,
}

/// The server's side of what we raise.
#[derive(Debug, Clone)]
pub struct Desktop {
    proxy: NotificationsProxy<'static>,
    /// The server interprets markup in bodies: ours must be escaped.
    markup: bool,
}

impl Desktop {
    pub async fn connect(bus: &zbus::Connection) -> zbus::Result<Desktop> {
        let proxy = NotificationsProxy::new(bus).await?;
        let caps = proxy.get_capabilities().await.unwrap_or_default();
        Ok(Desktop {
            markup: caps.iter().any(|c| c == "body-markup"),
            proxy,
        })
    }

    pub fn proxy(&self) -> &NotificationsProxy<'static> {
        &self.proxy
    }

    /// Raises (or updates) a notification; returns its id. It never expires by itself:
    /// a prompt must stay until the user or the deadline ends it.
    pub async fn show(&self, note: &Note<'_>) -> zbus::Result<u32> {
        let body = if self.markup {
            escape(note.body)
        } else {
            note.body.to_owned()
        };
        let actions: Vec<&str> = note
            .actions
            .iter()
            .flat_map(|(a, label)| [a.key(), *label])
            .collect();
        let mut hints = HashMap::new();
        hints.insert("urgency", Value::U8(note.urgency as u8));
        hints.insert("resident", Value::Bool(true));
        hints.insert("desktop-entry", Value::from("deskside-desktop"));
        self.proxy
            .notify(
                crate::texts::APP_NAME,
                note.replaces,
                crate::texts::ICON,
                note.summary,
                &body,
                &actions,
                hints,
                0,
            )
            .await
    }

    pub async fn close(&self, id: u32) -> zbus::Result<()> {
        self.proxy.close_notification(id).await
    }
}

/// Markup-capable servers read `<`, `>` and `&` as markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_markup_is_escaped() {
        for a in [Action::Allow, Action::Deny, Action::Details, Action::End] {
            assert_eq!(Action::from_key(a.key()), Some(a));
        }
        assert_eq!(Action::from_key("default"), None);
        assert_eq!(escape("<b>a & b</b>"), "&lt;b&gt;a &amp; b&lt;/b&gt;");
        assert_eq!(Closed::from_reason(2), Closed::Dismissed);
    }
}
