//! A small Request Tracker REST 2.0 client: the adapter uses it, and so do the tests
//! that check what RT stored. Every call is one bounded HTTP request with a timeout.

use serde_json::{Value, json};

use super::super::AdapterError;
use super::super::bundle_files::BundleFile;
use super::super::config::RtConfig;
use super::super::http::{self, Client, MAX_RESPONSE_BYTES, Part, Reply};
use super::SYSTEM;

/// A marker search asks for one page this long: a marker is on one ticket (or, after a
/// create RT finished but never answered, on that ticket alone), never on hundreds.
const SEARCH_PAGE: usize = 100;

/// Attachments are listed newest first in pages of this many…
const ATTACHMENT_PAGE: usize = 100;
/// …and at most this many pages are read: 50 syncs of a 100-file bundle. A ticket with
/// more history than that is answered with an error rather than a duplicate comment.
const MAX_ATTACHMENT_PAGES: usize = 50;

/// A queue as RT knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtQueue {
    pub id: String,
    pub name: String,
}

/// The parts of an RT ticket a sync looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtTicket {
    pub id: u64,
    pub subject: String,
    pub status: String,
    pub queue_id: String,
}

/// The REST 2.0 client.
#[derive(Debug, Clone)]
pub struct RtClient {
    http: Client,
    /// `<url>/REST/2.0`.
    api: String,
}

impl RtClient {
    pub fn new(config: &RtConfig) -> RtClient {
        let auth = Client::basic_auth(&config.user, config.password.expose());
        RtClient {
            http: Client::new(SYSTEM, config.timeout, Some(auth)),
            api: format!("{}/REST/2.0", config.url),
        }
    }

    /// The full URL of an API path such as `/ticket/42`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// `GET` with a response limit; any status.
    pub fn get(&self, path: &str, limit: u64) -> Result<Reply, AdapterError> {
        self.http.get(&self.url(path), limit)
    }

    /// `GET` that must answer 200 with JSON.
    pub fn get_json(&self, path: &str, limit: u64) -> Result<Value, AdapterError> {
        let url = self.url(path);
        let reply = self.http.get(&url, limit)?;
        if reply.status != 200 {
            return Err(self.http.status_error("GET", &url, &reply));
        }
        self.http.json("GET", &url, &reply)
    }

    /// `POST`/`PUT` a JSON body; any status.
    pub fn send_json(
        &self,
        method: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<Reply, AdapterError> {
        self.http.send_json(method, &self.url(path), body)
    }

    /// The queue called `name`, or `None` when RT has none (404).
    pub fn queue(&self, name: &str) -> Result<Option<RtQueue>, AdapterError> {
        let path = format!("/queue/{}", http::path_segment(name));
        let url = self.url(&path);
        let reply = self.http.get(&url, MAX_RESPONSE_BYTES)?;
        if reply.status == 404 {
            return Ok(None);
        }
        if reply.status != 200 {
            return Err(self.http.status_error("GET", &url, &reply));
        }
        let v = self.http.json("GET", &url, &reply)?;
        let id = id_string(v.get("id")).ok_or_else(|| self.protocol("GET", &url, "no queue id"))?;
        let name = v
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned();
        Ok(Some(RtQueue { id, name }))
    }

    /// Creates a queue (RT answers 400 if it exists: look it up first).
    pub fn create_queue(&self, name: &str) -> Result<RtQueue, AdapterError> {
        let url = self.url("/queue");
        let reply = self
            .http
            .send_json("POST", &url, &json!({ "Name": name }))?;
        if reply.status != 201 {
            return Err(self.http.status_error("POST", &url, &reply));
        }
        let v = self.http.json("POST", &url, &reply)?;
        let id =
            id_string(v.get("id")).ok_or_else(|| self.protocol("POST", &url, "no queue id"))?;
        Ok(RtQueue {
            id,
            name: name.to_owned(),
        })
    }

    /// The ticket, or `None` when RT does not show it to this user.
    pub fn ticket(&self, id: u64) -> Result<Option<RtTicket>, AdapterError> {
        let url = self.url(&format!("/ticket/{id}"));
        let reply = self.http.get(&url, MAX_RESPONSE_BYTES)?;
        if matches!(reply.status, 403 | 404) {
            return Ok(None);
        }
        if reply.status != 200 {
            return Err(self.http.status_error("GET", &url, &reply));
        }
        let v = self.http.json("GET", &url, &reply)?;
        // `Queue` is an object pointing at the queue: {"id": "3", "type": "queue", …}.
        let queue_id = id_string(v.get("Queue").and_then(|q| q.get("id")))
            .ok_or_else(|| self.protocol("GET", &url, "the ticket has no Queue.id"))?;
        let text = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Some(RtTicket {
            id,
            subject: text("Subject"),
            status: text("Status"),
            queue_id,
        }))
    }

    /// Creates a ticket; returns its id.
    pub fn create_ticket(
        &self,
        queue: &str,
        subject: &str,
        content: &str,
    ) -> Result<u64, AdapterError> {
        let url = self.url("/ticket");
        let body = json!({
            "Queue": queue,
            "Subject": subject,
            "Content": content,
            "ContentType": "text/plain",
        });
        let reply = self.http.send_json("POST", &url, &body)?;
        if reply.status != 201 {
            return Err(self.http.status_error("POST", &url, &reply));
        }
        let v = self.http.json("POST", &url, &reply)?;
        id_string(v.get("id"))
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| self.protocol("POST", &url, "no ticket id in the answer"))
    }

    /// Adds one comment with a text body and binary attachments (multipart: a `JSON`
    /// field plus `Attachments` file parts). Returns RT's messages.
    pub fn comment(
        &self,
        id: u64,
        subject: &str,
        body: &str,
        attachments: &[BundleFile],
    ) -> Result<Vec<String>, AdapterError> {
        let url = self.url(&format!("/ticket/{id}/comment"));
        let meta = json!({
            "Subject": subject,
            "Content": body,
            "ContentType": "text/plain",
        })
        .to_string();
        let mut parts = vec![Part {
            name: "JSON",
            filename: None,
            content_type: "application/json",
            data: meta.as_bytes(),
        }];
        parts.extend(attachments.iter().map(|a| Part {
            name: "Attachments",
            filename: Some(&a.filename),
            content_type: "application/octet-stream",
            data: &a.data,
        }));
        let (content_type, form) = http::multipart(&parts);
        let reply = self.http.send("POST", &url, &content_type, &[], &form)?;
        if reply.status != 201 {
            return Err(self.http.status_error("POST", &url, &reply));
        }
        Ok(messages(&reply))
    }

    /// Asks RT to move the ticket; returns RT's messages. RT answers 200 even when it
    /// did nothing: read the ticket back to know.
    pub fn set_queue(&self, id: u64, queue: &str) -> Result<Vec<String>, AdapterError> {
        let url = self.url(&format!("/ticket/{id}"));
        let reply = self
            .http
            .send_json("PUT", &url, &json!({ "Queue": queue }))?;
        if reply.status != 200 {
            return Err(self.http.status_error("PUT", &url, &reply));
        }
        Ok(messages(&reply))
    }

    /// Tickets whose subject contains `needle` (TicketSQL `Subject LIKE`, which RT
    /// matches as a substring, case-insensitively): `(id, subject)`, lowest id first.
    /// `needle` must not hold a `'`.
    pub fn tickets_with_subject(&self, needle: &str) -> Result<Vec<(u64, String)>, AdapterError> {
        let query = format!("Subject LIKE '{}'", needle.replace('\'', ""));
        let path = format!(
            "/tickets?query={}&fields=Subject&orderby=id&order=ASC&per_page={SEARCH_PAGE}",
            http::path_segment(&query)
        );
        let url = self.url(&path);
        let v = self.get_json(&path, MAX_RESPONSE_BYTES)?;
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| self.protocol("GET", &url, "a search answer without items"))?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let id = id_string(item.get("id"))?.parse().ok()?;
                let subject = item.get("Subject").and_then(Value::as_str)?.to_owned();
                Some((id, subject))
            })
            .collect())
    }

    /// Whether any message on ticket `id` has a subject containing `needle` (a comment's
    /// subject is its first attachment's). Newest first: a retry looks for a recent one.
    pub fn has_message_with_subject(&self, id: u64, needle: &str) -> Result<bool, AdapterError> {
        for page in 1..=MAX_ATTACHMENT_PAGES {
            let path = format!(
                "/ticket/{id}/attachments?fields=Subject&orderby=id&order=DESC\
                 &per_page={ATTACHMENT_PAGE}&page={page}"
            );
            let url = self.url(&path);
            let v = self.get_json(&path, MAX_RESPONSE_BYTES)?;
            let items = v
                .get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| self.protocol("GET", &url, "an attachment list without items"))?;
            if items.iter().any(|item| {
                item.get("Subject")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.contains(needle))
            }) {
                return Ok(true);
            }
            let pages = v.get("pages").and_then(Value::as_u64).unwrap_or(1);
            if items.len() < ATTACHMENT_PAGE || u64::try_from(page).unwrap_or(u64::MAX) >= pages {
                return Ok(false);
            }
        }
        Err(self.protocol(
            "GET",
            &self.url(&format!("/ticket/{id}/attachments")),
            &format!(
                "RT ticket {id} has more than {} attachments; Deskside cannot tell whether this \
                 sync's comment is already there, so it does not post it again. Merge or split \
                 the RT ticket, or unlink it (a sync then opens a new one)",
                MAX_ATTACHMENT_PAGES * ATTACHMENT_PAGE
            ),
        ))
    }

    fn protocol(&self, method: &'static str, url: &str, reason: &str) -> AdapterError {
        AdapterError::Protocol {
            system: SYSTEM,
            method,
            url: url.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// RT writes ids as JSON strings ("42"); accept numbers too.
fn id_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// RT's answer to an update: a JSON array of messages.
fn messages(reply: &Reply) -> Vec<String> {
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(Value::Array(items)) => items
            .iter()
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
            .collect(),
        _ => vec![reply.excerpt()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strings_or_numbers() {
        assert_eq!(id_string(Some(&json!("7"))), Some("7".into()));
        assert_eq!(id_string(Some(&json!(7))), Some("7".into()));
        assert_eq!(id_string(Some(&json!(""))), None);
        assert_eq!(id_string(None), None);
    }
}
