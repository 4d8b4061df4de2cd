//! Request Tracker over REST 2.0 (`<url>/REST/2.0`, HTTP basic auth).
//!
//! A sync finds the RT ticket linked to the Deskside ticket (`rt:<id>`) or creates one
//! in the tier's queue, adds one comment whose body is `report.md` and whose
//! attachments are every evidence file (sent as `application/octet-stream` so RT keeps
//! them byte-exact), moves the ticket to the tier's queue, and reads it back: RT answers
//! 200 to an update that changed nothing, so only the re-read proves the move.

use serde_json::{Value, json};

use super::bundle_files::{BundleFile, BundleFiles};
use super::config::RtConfig;
use super::http::{self, Client, MAX_RESPONSE_BYTES, Part, Reply};
use super::{AdapterError, SyncJob, SyncOutcome, TicketSystem};

const SYSTEM: &str = "Request Tracker";

/// The prefix of an external reference to an RT ticket: `rt:42`.
pub const REF_PREFIX: &str = "rt:";

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

/// A small REST 2.0 client: the adapter uses it, and so do the tests that check what
/// RT stored.
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

/// Parses `rt:42`.
pub fn parse_ref(external_ref: &str) -> Option<u64> {
    external_ref.strip_prefix(REF_PREFIX)?.parse().ok()
}

/// The Request Tracker adapter.
#[derive(Debug, Clone)]
pub struct RtTicketSystem {
    config: RtConfig,
    client: RtClient,
}

impl RtTicketSystem {
    pub fn new(config: RtConfig) -> RtTicketSystem {
        let client = RtClient::new(&config);
        RtTicketSystem { config, client }
    }

    pub fn client(&self) -> &RtClient {
        &self.client
    }

    /// Everything after the RT ticket exists.
    fn update(
        &self,
        id: u64,
        job: &SyncJob,
        files: &BundleFiles,
        queue: &RtQueue,
    ) -> Result<String, AdapterError> {
        // RT refuses a comment attachment with no content; an empty file's digest is
        // well known, so nothing is lost by leaving it out.
        let (attachments, empty): (Vec<BundleFile>, Vec<BundleFile>) = files
            .attachments
            .iter()
            .cloned()
            .partition(|f| !f.data.is_empty());
        let subject = comment_subject(job);
        self.client
            .comment(id, &subject, &files.report_md, &attachments)?;

        let before = self.existing(id)?;
        if before.queue_id != queue.id {
            let said = self.client.set_queue(id, &queue.name)?;
            let after = self.existing(id)?;
            if after.queue_id != queue.id {
                return Err(AdapterError::Verify(format!(
                    "Request Tracker answered 200 to moving ticket {id} into queue {:?} but the ticket \
                     is still in queue id {} (RT said: {}); check that RT user {:?} may move tickets \
                     into that queue (ModifyTicket on the old queue, CreateTicket on the new one)",
                    queue.name,
                    after.queue_id,
                    said.join("; "),
                    self.config.user,
                )));
            }
        }
        let mut detail = format!(
            "RT ticket {id}: comment with {} attachment(s), in queue {:?}",
            attachments.len(),
            queue.name
        );
        if !empty.is_empty() {
            detail.push_str(&format!(
                "; {} empty file(s) not attached: {}",
                empty.len(),
                empty
                    .iter()
                    .map(|f| f.filename.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(detail)
    }

    fn existing(&self, id: u64) -> Result<RtTicket, AdapterError> {
        self.client.ticket(id)?.ok_or_else(|| {
            AdapterError::Verify(format!(
                "RT ticket {id} (linked as {REF_PREFIX}{id}) does not exist or RT user {:?} cannot see it; \
                 fix the link or the user's rights in RT",
                self.config.user
            ))
        })
    }
}

fn ticket_subject(job: &SyncJob) -> String {
    format!("[Deskside #{}] {}", job.ticket.number, job.ticket.title)
}

fn comment_subject(job: &SyncJob) -> String {
    let note: String = job
        .note
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect();
    if note.is_empty() {
        format!("Deskside #{} evidence for {}", job.ticket.number, job.tier)
    } else {
        format!("Deskside #{} to {}: {note}", job.ticket.number, job.tier)
    }
}

impl TicketSystem for RtTicketSystem {
    fn sync(&self, job: &SyncJob) -> Result<SyncOutcome, AdapterError> {
        let files = BundleFiles::read(&job.bundle_dir)?;
        let queue_name = self.config.queues.for_tier(job.tier);
        let queue = self.client.queue(queue_name)?.ok_or_else(|| {
            AdapterError::Verify(format!(
                "Request Tracker has no queue {queue_name:?} (ticketing.rt.queues.{} in controller.toml), \
                 or RT user {:?} cannot see it; create the queue in RT or fix the config",
                job.tier, self.config.user
            ))
        })?;

        let linked = match job.ticket.external_ref.as_deref() {
            Some(r) if r.starts_with(REF_PREFIX) => Some(parse_ref(r).ok_or_else(|| {
                AdapterError::Verify(format!(
                    "Deskside ticket #{} is linked to {r:?}, which is not an RT ticket id (rt:<number>)",
                    job.ticket.number
                ))
            })?),
            _ => None,
        };
        let (id, created) = match linked {
            Some(id) => {
                self.existing(id)?;
                (id, false)
            }
            None => {
                let intro = format!(
                    "Opened by Deskside for ticket #{} ({}; requester {}, priority {}).\n\
                     The evidence and the report follow as a comment.",
                    job.ticket.number,
                    job.ticket.title,
                    if job.ticket.requester.is_empty() {
                        "not recorded"
                    } else {
                        &job.ticket.requester
                    },
                    job.ticket.priority,
                );
                let id = self
                    .client
                    .create_ticket(&queue.name, &ticket_subject(job), &intro)?;
                (id, true)
            }
        };
        let external_ref = format!("{REF_PREFIX}{id}");
        match self.update(id, job, &files, &queue) {
            Ok(detail) => Ok(SyncOutcome {
                external_ref,
                detail,
            }),
            Err(source) if created => Err(AdapterError::AfterCreate {
                external_ref,
                source: Box::new(source),
            }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse() {
        assert_eq!(parse_ref("rt:42"), Some(42));
        assert_eq!(parse_ref("rt:x"), None);
        assert_eq!(parse_ref("webhook:h"), None);
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        assert_eq!(id_string(Some(&json!("7"))), Some("7".into()));
        assert_eq!(id_string(Some(&json!(7))), Some("7".into()));
        assert_eq!(id_string(Some(&json!(""))), None);
        assert_eq!(id_string(None), None);
    }
}
