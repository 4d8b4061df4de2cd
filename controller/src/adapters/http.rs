//! The plain HTTP the adapters share: one `ureq` agent per adapter with a timeout on
//! every request, no redirects (they would carry credentials elsewhere), bounded
//! response reads, and `multipart/form-data` built byte-exact.

use std::time::Duration;

use serde_json::Value;

use super::AdapterError;

/// Largest response an adapter reads. RT's JSON answers (a ticket, a page of
/// attachments) are a few KiB; attachment contents base64-encoded can be larger, so
/// callers fetching those pass their own limit.
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// How much of an error body goes into the message.
const ERROR_BODY_CHARS: usize = 300;

/// Connecting never needs more than this on a help desk's network.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status and the (bounded) body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body's start, as text, for error messages.
    pub fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut out: String = text.chars().take(ERROR_BODY_CHARS).collect();
        if text.chars().nth(ERROR_BODY_CHARS).is_some() {
            out.push('…');
        }
        out
    }
}

/// An HTTP client for one external system.
#[derive(Debug, Clone)]
pub struct Client {
    system: &'static str,
    agent: ureq::Agent,
    /// `Authorization` header value, if any.
    auth: Option<String>,
    /// Bounds each whole request; named in the timeout error.
    timeout: Duration,
}

impl Client {
    /// `timeout` bounds each whole request (connect, send, receive).
    pub fn new(system: &'static str, timeout: Duration, auth: Option<String>) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(CONNECT_TIMEOUT)))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("deskside/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            system,
            agent,
            auth,
            timeout,
        }
    }

    pub fn system(&self) -> &'static str {
        self.system
    }

    /// `Basic base64(user:password)`.
    pub fn basic_auth(user: &str, password: &str) -> String {
        use base64::Engine as _;
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    pub fn get(&self, url: &str, limit: u64) -> Result<Reply, AdapterError> {
        let mut req = self.agent.get(url).header("Accept", "application/json");
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.call();
        self.finish("GET", url, resp, limit)
    }

    /// Sends `body` with `content_type` and extra headers.
    pub fn send(
        &self,
        method: &'static str,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, AdapterError> {
        let mut req = match method {
            "PUT" => self.agent.put(url),
            "PATCH" => self.agent.patch(url),
            _ => self.agent.post(url),
        }
        .header("Accept", "application/json")
        .header("Content-Type", content_type);
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send(body);
        self.finish(method, url, resp, MAX_RESPONSE_BYTES)
    }

    pub fn send_json(
        &self,
        method: &'static str,
        url: &str,
        body: &Value,
    ) -> Result<Reply, AdapterError> {
        self.send(
            method,
            url,
            "application/json",
            &[],
            body.to_string().as_bytes(),
        )
    }

    fn finish(
        &self,
        method: &'static str,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        limit: u64,
    ) -> Result<Reply, AdapterError> {
        let transport = |source: ureq::Error| {
            if is_timeout(&source) {
                AdapterError::Timeout {
                    system: self.system,
                    method,
                    url: url.to_owned(),
                    secs: self.timeout.as_secs(),
                }
            } else {
                AdapterError::Transport {
                    system: self.system,
                    method,
                    url: url.to_owned(),
                    source: Box::new(source),
                }
            }
        };
        let mut resp = resp.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = match resp.body_mut().with_config().limit(limit).read_to_vec() {
            Ok(body) => body,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                return Err(AdapterError::Protocol {
                    system: self.system,
                    method,
                    url: url.to_owned(),
                    reason: format!("the answer (HTTP {status}) is larger than {limit} bytes"),
                });
            }
            Err(e) => return Err(transport(e)),
        };
        Ok(Reply { status, body })
    }

    /// The error for an answer that is not what the call expects.
    pub fn status_error(&self, method: &'static str, url: &str, reply: &Reply) -> AdapterError {
        let hint = match reply.status {
            401 | 403 => " (check the user and password or secret in controller.toml)",
            300..=399 => " (a redirect: check the url in controller.toml)",
            _ => "",
        };
        AdapterError::Status {
            system: self.system,
            method,
            url: url.to_owned(),
            status: reply.status,
            hint,
            body: reply.excerpt(),
        }
    }

    /// Parses a JSON answer.
    pub fn json(
        &self,
        method: &'static str,
        url: &str,
        reply: &Reply,
    ) -> Result<Value, AdapterError> {
        serde_json::from_slice(&reply.body).map_err(|e| AdapterError::Protocol {
            system: self.system,
            method,
            url: url.to_owned(),
            reason: format!("not JSON ({e}): {}", reply.excerpt()),
        })
    }
}

/// Whether the request ran out of time (rather than being refused or cut off).
fn is_timeout(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        _ => false,
    }
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone)]
pub struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: &'a str,
    pub data: &'a [u8],
}

/// Encodes `parts`; returns the `Content-Type` header value and the body. The data is
/// sent as-is (binary parts need no transfer encoding in form-data).
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = loop {
        let candidate = format!("deskside-{:032x}", rand::random::<u128>());
        let needle = candidate.as_bytes();
        let clashes = parts
            .iter()
            .any(|p| p.data.windows(needle.len()).any(|w| w == needle));
        if !clashes {
            break candidate;
        }
    };
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!(
            "Content-Disposition: form-data; name=\"{}\"",
            header_quote(part.name)
        );
        if let Some(filename) = part.filename {
            disposition.push_str(&format!("; filename=\"{}\"", header_quote(filename)));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(
            format!("\r\nContent-Type: {}\r\n\r\n", part.content_type).as_bytes(),
        );
        body.extend_from_slice(part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Makes a name safe inside a quoted header parameter.
fn header_quote(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// Percent-encodes one URL path segment (an RT queue name may hold spaces).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_carries_binary_data_exactly() {
        let data: Vec<u8> = (0..=255u8).collect();
        let (ct, body) = multipart(&[
            Part {
                name: "JSON",
                filename: None,
                content_type: "application/json",
                data: b"{}",
            },
            Part {
                name: "Attachments",
                filename: Some("a\"b"),
                content_type: "application/octet-stream",
                data: &data,
            },
        ]);
        let boundary = ct
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap_or_default();
        assert!(boundary.starts_with("deskside-"));
        assert!(body.windows(data.len()).any(|w| w == data.as_slice()));
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("filename=\"a_b\""));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            path_segment("Desktop Engineering/2"),
            "Desktop%20Engineering%2F2"
        );
        assert_eq!(path_segment("L2"), "L2");
    }

    #[test]
    fn basic_auth_is_rfc7617() {
        // RFC 7617 §2 example.
        assert_eq!(
            Client::basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
