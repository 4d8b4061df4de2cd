//! Request Tracker over REST 2.0 (`<url>/REST/2.0`, HTTP basic auth).
//!
//! A sync finds the RT ticket linked to the Deskside ticket (`rt:<id>`) or creates one
//! in the tier's queue, adds one comment whose body is `report.md` and whose
//! attachments are every evidence file (sent as `application/octet-stream` so RT keeps
//! them byte-exact), moves the ticket to the tier's queue, and reads it back: RT answers
//! 200 to an update that changed nothing, so only the re-read proves the move.
//!
//! Every write is safe to repeat. A request whose answer never came (a timeout, a proxy
//! that dropped the reply) may still have been carried out, so before writing, a sync
//! looks for what that write leaves behind:
//! - the RT ticket's subject carries `[deskside:<controller>:<ticket>]` ([`ticket_marker`]);
//!   an unlinked Deskside ticket is first searched for by it (TicketSQL), and only
//!   created when RT has none;
//! - each comment's subject carries `[deskside-sync:<controller>:<ticket>:<sync>]`
//!   ([`comment_marker`]), one per outbox job; it is posted only when no message on the
//!   RT ticket has it.

mod check;
mod client;

pub use check::{QueueCheck, check_queues};
pub use client::{RtClient, RtQueue, RtTicket};

use super::bundle_files::{BundleFile, BundleFiles};
use super::config::RtConfig;
use super::{AdapterError, SyncJob, SyncOutcome, TicketSystem};

const SYSTEM: &str = "Request Tracker";

/// RT keeps a ticket's subject in 200 characters (`Tickets.Subject`) and cuts longer
/// ones: the title is shortened so the marker at the end always survives.
const TICKET_SUBJECT_MAX_BYTES: usize = 200;
/// A message's subject is kept in 255 (`Attachments.Subject`).
const MESSAGE_SUBJECT_MAX_BYTES: usize = 255;

/// The prefix of an external reference to an RT ticket: `rt:42`.
pub const REF_PREFIX: &str = "rt:";

/// Parses `rt:42`.
pub fn parse_ref(external_ref: &str) -> Option<u64> {
    external_ref.strip_prefix(REF_PREFIX)?.parse().ok()
}

/// The marker in the subject of the RT ticket that stands for Deskside ticket `number`
/// of the controller `origin`. The closing bracket keeps ticket 4 from matching 42.
pub fn ticket_marker(origin: &str, number: u64) -> String {
    format!("[deskside:{origin}:{number}]")
}

/// The marker in the subject of the comment that outbox job `sync_id` posts.
pub fn comment_marker(origin: &str, number: u64, sync_id: u64) -> String {
    format!("[deskside-sync:{origin}:{number}:{sync_id}]")
}

/// `text`, then a space and `marker`, in at most `max` bytes: `text` is cut (on a
/// character boundary) so the marker is always whole.
fn with_marker(text: &str, marker: &str, max: usize) -> String {
    let budget = max.saturating_sub(marker.len() + 1);
    let mut end = text.len().min(budget);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let kept = text.get(..end).unwrap_or_default().trim_end();
    format!("{kept} {marker}")
}

/// Keeps what can go into a marker (and a TicketSQL string): letters, digits, `-`.
fn marker_safe(origin: &str) -> String {
    let s: String = origin
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    if s.is_empty() { "controller".into() } else { s }
}

/// The Request Tracker adapter.
#[derive(Debug, Clone)]
pub struct RtTicketSystem {
    config: RtConfig,
    client: RtClient,
    /// Names this controller in the markers (see the module docs).
    origin: String,
}

impl RtTicketSystem {
    /// `origin` tells this controller's tickets from another's in the same RT (the
    /// controller passes a digest of its CA certificate).
    pub fn new(config: RtConfig, origin: &str) -> RtTicketSystem {
        let client = RtClient::new(&config);
        RtTicketSystem {
            config,
            client,
            origin: marker_safe(origin),
        }
    }

    pub fn client(&self) -> &RtClient {
        &self.client
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The RT ticket a previous attempt created for this Deskside ticket, if any: the
    /// lowest id whose subject carries the marker.
    fn find_created(&self, job: &SyncJob) -> Result<Option<u64>, AdapterError> {
        let marker = ticket_marker(&self.origin, job.ticket.number);
        let found = self.client.tickets_with_subject(&marker)?;
        Ok(found
            .into_iter()
            .filter(|(_, subject)| subject.contains(&marker))
            .map(|(id, _)| id)
            .min())
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
        let marker = comment_marker(&self.origin, job.ticket.number, job.sync_id);
        let already = self.client.has_message_with_subject(id, &marker)?;
        if !already {
            let subject = with_marker(&comment_subject(job), &marker, MESSAGE_SUBJECT_MAX_BYTES);
            self.client
                .comment(id, &subject, &files.report_md, &attachments)?;
        }

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
        let mut detail = if already {
            format!(
                "RT ticket {id}: this sync's comment was already there (an earlier attempt \
                 posted it but had no answer in time), in queue {:?}",
                queue.name
            )
        } else {
            format!(
                "RT ticket {id}: comment with {} attachment(s), in queue {:?}",
                attachments.len(),
                queue.name
            )
        };
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

    fn create(&self, job: &SyncJob, queue: &RtQueue) -> Result<u64, AdapterError> {
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
        let subject = with_marker(
            &format!("[Deskside #{}] {}", job.ticket.number, job.ticket.title),
            &ticket_marker(&self.origin, job.ticket.number),
            TICKET_SUBJECT_MAX_BYTES,
        );
        self.client.create_ticket(&queue.name, &subject, &intro)
    }
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
            // An attempt whose create had no answer may have made the ticket anyway.
            None => match self.find_created(job)? {
                Some(id) => (id, false),
                None => (self.create(job, &queue)?, true),
            },
        };
        let external_ref = format!("{REF_PREFIX}{id}");
        match self.update(id, job, &files, &queue) {
            Ok(detail) => Ok(SyncOutcome {
                external_ref,
                detail,
                link: Some(format!("{}/Ticket/Display.html?id={id}", self.config.url)),
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
    fn markers_do_not_match_a_longer_number() {
        assert!(!ticket_marker("ab12", 42).contains(&ticket_marker("ab12", 4)));
        assert!(!comment_marker("ab12", 4, 12).contains(&comment_marker("ab12", 4, 1)));
        assert_eq!(marker_safe("a'b c]"), "abc");
        assert_eq!(marker_safe("'"), "controller");
    }

    #[test]
    fn a_long_subject_is_cut_before_the_marker() {
        let marker = ticket_marker("0123456789ab", 12345);
        let long = format!("[Deskside #12345] {}", "\u{e9}".repeat(300));
        let subject = with_marker(&long, &marker, TICKET_SUBJECT_MAX_BYTES);
        assert!(
            subject.len() <= TICKET_SUBJECT_MAX_BYTES,
            "{}",
            subject.len()
        );
        assert!(subject.ends_with(&format!(" {marker}")), "{subject}");
        assert!(subject.starts_with("[Deskside #12345] \u{e9}"), "{subject}");
        assert_eq!(with_marker("short", "[m]", 255), "short [m]");
    }
}
