//! What the tests read back from RT over its REST 2 API: queues, and each ticket's
//! attachments and message bodies, decoded independently of the adapter under test.

use anyhow::{Result, anyhow, bail};
use deskside_controller::adapters::http::MAX_RESPONSE_BYTES;
use serde_json::Value;

use super::RtServer;

/// An attachment's JSON (base64 content) in the tests stays well under this.
const MAX_ATTACHMENT_JSON: u64 = 64 * 1024 * 1024;

/// An attachment as RT stores it.
#[derive(Debug, Clone)]
pub struct RtAttachment {
    pub id: String,
    pub transaction_id: String,
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

impl RtServer {
    /// Creates the queue unless RT has it (`GET /queue/NAME` 404 → `POST /queue`).
    pub fn ensure_queue(&self, name: &str) -> Result<String> {
        let client = self.client();
        if let Some(q) = client.queue(name)? {
            return Ok(q.id);
        }
        Ok(client.create_queue(name)?.id)
    }

    /// The id of a queue that exists.
    pub fn queue_id(&self, name: &str) -> Result<String> {
        Ok(self
            .client()
            .queue(name)?
            .ok_or_else(|| anyhow!("RT has no queue {name:?}"))?
            .id)
    }

    /// Every attachment of a ticket that has a file name, with its bytes as RT returns
    /// them (`GET /attachment/:id`, base64).
    pub fn attachments(&self, ticket: u64) -> Result<Vec<RtAttachment>> {
        let client = self.client();
        let list = client.get_json(
            &format!("/ticket/{ticket}/attachments?per_page=100&fields=Filename"),
            MAX_RESPONSE_BYTES,
        )?;
        if field(&list, "pages").as_u64().unwrap_or(1) > 1 {
            bail!("ticket {ticket} has more than 100 attachments; page through them");
        }
        let mut out = Vec::new();
        for item in items(&list) {
            if text(item, "Filename").is_empty() {
                continue; // message body parts
            }
            let id = json_id(field(item, "id"))?;
            let a = client.get_json(&format!("/attachment/{id}"), MAX_ATTACHMENT_JSON)?;
            out.push(RtAttachment {
                transaction_id: json_id(field(field(&a, "TransactionId"), "id"))?,
                filename: text(&a, "Filename").to_owned(),
                content_type: text(&a, "ContentType").to_owned(),
                content: base64_decode(text(&a, "Content"))?,
                id,
            });
        }
        Ok(out)
    }

    /// The text of every unnamed `text/plain` part (message bodies) of a ticket.
    pub fn bodies(&self, ticket: u64) -> Result<Vec<String>> {
        let client = self.client();
        let list = client.get_json(
            &format!("/ticket/{ticket}/attachments?per_page=100&fields=Filename,ContentType"),
            MAX_RESPONSE_BYTES,
        )?;
        let mut out = Vec::new();
        for item in items(&list) {
            if !text(item, "Filename").is_empty() || text(item, "ContentType") != "text/plain" {
                continue;
            }
            let id = json_id(field(item, "id"))?;
            let a = client.get_json(&format!("/attachment/{id}"), MAX_ATTACHMENT_JSON)?;
            let bytes = base64_decode(text(&a, "Content"))?;
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(out)
    }
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    field(v, key).as_str().unwrap_or_default()
}

fn items(list: &Value) -> &[Value] {
    field(list, "items").as_array().map_or(&[], Vec::as_slice)
}

/// RT writes ids as strings; accept numbers too.
fn json_id(v: &Value) -> Result<String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => bail!("expected an RT id, got {other}"),
    }
}

/// Standard base64 with padding; RT wraps it at 76 columns, so whitespace is skipped.
/// Written out here so the check does not share code with what it checks.
pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut padding = 0usize;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => bail!("not base64: byte {c:#04x}"),
        };
        if padding > 0 {
            bail!("base64 data after padding");
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or_default());
        }
    }
    if padding > 2 {
        bail!("too much base64 padding");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_wrapped_text() -> Result<()> {
        assert_eq!(base64_decode("Y2Fm6SD//g==\n")?, b"caf\xe9 \xff\xfe");
        assert_eq!(base64_decode("aGVs\nbG8=")?, b"hello");
        assert_eq!(base64_decode("")?, b"");
        assert!(base64_decode("a$").is_err());
        Ok(())
    }
}
