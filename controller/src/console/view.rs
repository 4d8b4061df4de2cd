//! What every page shares: who is signed in (for the header), rendering a template,
//! the problem page, the security headers on every response, and small formatting
//! helpers the templates call.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use deskside_proto::msg::tech::ErrorCode;

use crate::service::Failure;

/// The Content-Security-Policy of every console page: nothing but this origin's own
/// files, no inline script or style, no plugins, no framing, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The signed-in technician, as the page header shows them.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub tier: String,
    pub admin: bool,
    /// The session's CSRF token, put in every form.
    pub csrf: String,
}

/// Renders a template as an HTML response.
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => internal(&format!("rendering the page: {e}")),
    }
}

#[derive(Template)]
#[template(path = "console/problem.html")]
pub struct Problem {
    pub me: Option<Me>,
    pub status: StatusCode,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Problem {
        Problem {
            me: None,
            status,
            message: message.into(),
        }
    }

    pub fn for_me(mut self, me: Me) -> Problem {
        self.me = Some(me);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = render(&self);
        *response.status_mut() = status;
        response
    }
}

pub fn internal(message: &str) -> Response {
    tracing::warn!(%message, "console request failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on the controller; the admin finds the details in its log.",
    )
    .into_response()
}

/// The HTTP status for an operation's failure.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::BadRequest | ErrorCode::FileUnavailable => StatusCode::BAD_REQUEST,
        ErrorCode::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::AgentOffline
        | ErrorCode::AgentRefused
        | ErrorCode::NoSession
        | ErrorCode::SessionExpired
        | ErrorCode::AgentDisabled => StatusCode::CONFLICT,
        ErrorCode::AgentFailed | ErrorCode::Timeout => StatusCode::BAD_GATEWAY,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The problem page for an operation's failure: the same message the CLI prints.
pub fn failure(me: Me, f: &Failure) -> Response {
    Problem::new(status_of(f.code), f.message.clone())
        .for_me(me)
        .into_response()
}

pub async fn not_found() -> Response {
    Problem::new(StatusCode::NOT_FOUND, "There is no such page.").into_response()
}

/// Adds the security headers to every response; pages are never cached.
pub async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let asset = req.uri().path().starts_with("/assets/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    // A handler that set a policy of its own keeps it: the HTML report's allows its inline
    // CSS, no script at all, and sandboxes it.
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null`
    // with every form post, and the CSRF check (rightly) refuses an origin it cannot
    // match. Other sites still learn nothing, and their posts arrive as `Origin: null`.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `2026-12-05 14:03 UTC` for seconds since the epoch.
pub fn when(secs: &u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(*secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// "in 3h 20m" / "12m ago" from now.
pub fn relative(secs: &u64) -> String {
    let (secs, now) = (*secs, crate::clock::now_secs());
    let (d, later) = if secs >= now {
        (secs - now, true)
    } else {
        (now - secs, false)
    };
    // Clocks a second apart (agent and controller) should not read "in 0s".
    if d < 2 {
        return "just now".to_owned();
    }
    let text = if d < 60 {
        format!("{d}s")
    } else if d < 3600 {
        format!("{}m", d / 60)
    } else if d < 86_400 {
        format!("{}h {}m", d / 3600, (d % 3600) / 60)
    } else {
        format!("{}d {}h", d / 86_400, (d % 86_400) / 3600)
    };
    if later {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// `1.5 MiB` for a byte count.
pub fn bytes(n: &u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let n = *n;
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {name}")
    }
}

/// ` selected` when a filter's value is this option's.
pub fn selected(value: &str, option: &str) -> &'static str {
    if value == option { " selected" } else { "" }
}

/// The CSRF token for a page's forms.
pub fn csrf(me: &Option<Me>) -> &str {
    me.as_ref().map_or("", |m| m.csrf.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_sizes_for_people() {
        assert_eq!(when(&0), "1970-01-01 00:00 UTC");
        assert_eq!(bytes(&512), "512 B");
        assert_eq!(bytes(&(1536 * 1024)), "1.5 MiB");
        assert!(relative(&0).ends_with(" ago"));
        assert_eq!(relative(&crate::clock::now_secs()), "just now");
        assert_eq!(selected("a", "a"), " selected");
        assert_eq!(selected("a", "b"), "");
    }

    #[test]
    fn the_csp_allows_no_inline_script() {
        assert!(CSP.contains("script-src 'self'"));
        assert!(!CSP.contains("unsafe-inline"));
        assert!(!CSP.contains("unsafe-eval"));
    }
}
