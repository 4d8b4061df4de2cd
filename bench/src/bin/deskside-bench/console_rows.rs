//! The report's rows for the web console with a real fleet.

use std::time::Duration;

use crate::console::ConsoleRun;
use crate::report::Row;
use crate::stats::{mib, ms, size};

/// The console's target: its agents, agent and ticket pages within this, at p95.
const PAGE_P95_TARGET: Duration = Duration::from_millis(100);
/// The size the targets are stated for.
const FLEET_AGENTS: u64 = 20_000;
const FLEET_TICKETS: u64 = 10_000;
/// The controller's memory budget with 20,000 agents connected (as the swarm row).
const CONTROLLER_RSS_TARGET: u64 = 2 * 1024 * 1024 * 1024;

/// `without_console_rss`: the swarm row's controller RSS in the same run, when it ran.
pub fn rows(run: &ConsoleRun, without_console_rss: Option<u64>) -> Vec<Row> {
    let full =
        run.agents >= FLEET_AGENTS && run.connected == run.agents && run.tickets >= FLEET_TICKETS;
    let fleet = format!("{} agents, {} tickets", run.agents, run.tickets);
    let mut rows: Vec<Row> = run
        .pages
        .iter()
        .map(|p| {
            let p95 = p.samples.pct(95);
            Row::new(
                &format!("console: {} ({fleet})", p.what),
                format!(
                    "{} / p95 {} (n={}, {})",
                    ms(p.samples.p50()),
                    ms(p95),
                    p.samples.len(),
                    size(u64::try_from(p.bytes).unwrap_or(u64::MAX))
                ),
                "p95 ≤ 100 ms server time with 20,000 agents",
            )
            .met(full && p95 <= PAGE_P95_TARGET)
            .how(format!(
                "`GET {}` signed in (session cookie), over one kept-alive HTTPS connection \
                 (rustls, the controller-issued certificate) from a client on the same \
                 machine; timed from the request sent to the last byte of the body read; one \
                 warm-up request not counted. The figure is p50 / p95",
                p.path
            ))
        })
        .collect();
    rows.push(browser_row(run));
    let baseline = match without_console_rss {
        Some(b) => format!("without the console (swarm row, same run): {}", mib(b)),
        None => "without the console: not measured in this mode".into(),
    };
    rows.push(
        Row::new(
            &format!("console: controller RSS with the console on ({fleet})"),
            format!(
                "{} connected, before any page; {} after the page measures",
                mib(run.rss_idle),
                mib(run.rss_after)
            ),
            "≤ 2 GiB with 20,000 agents",
        )
        .baseline(baseline)
        .met(full && run.rss_after.max(run.rss_idle) <= CONTROLLER_RSS_TARGET)
        .how(format!(
            "VmRSS of the release `deskside serve` process (`[console] listen` set) with the \
             swarm's {} simulated agents connected ({:.1} s to connect), {} of them with a \
             snapshot (`deskside diag --all`), and {} tickets opened through the technician \
             client (`TechRequest::NewTicket`, {} at a time over one connection: {:.1} s); \
             read before the first console request and after the timed pages",
            run.agents,
            run.setup_secs,
            run.snapshots,
            run.tickets,
            crate::console::TICKET_CONCURRENCY,
            run.tickets_secs
        )),
    );
    rows
}

fn browser_row(run: &ConsoleRun) -> Row {
    let measure = "console: first render in headless Chromium";
    let how = "Debian's `chromium` through `chromedriver` (WebDriver, `--headless=new`), \
               the session cookie set on the console's origin (by `document.cookie` on its sign-in page), then a fresh navigation to \
               the page each run (one untimed first); read from the page itself: \
               `performance.getEntriesByType('paint')` first-contentful-paint, and the \
               navigation entry's responseEnd, domContentLoadedEventEnd and loadEventEnd, all from navigation start. \
               The figure is the p50 of each";
    match &run.renders {
        Ok(pages) => {
            let text = pages
                .iter()
                .map(|(path, r)| {
                    format!(
                        "`{}`: first paint {:.0} ms, document received {:.0} ms, DOM ready {:.0} ms, loaded {:.0} ms (n={})",
                        if path == "/agents" { "/agents" } else { "/agents/ID" },
                        r.p50(|x| x.fcp),
                        r.p50(|x| x.response_end),
                        r.p50(|x| x.dom_content_loaded),
                        r.p50(|x| x.load),
                        r.0.len()
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>");
            Row::new(measure, text, "—").how(how)
        }
        Err(e) => Row::new(measure, format!("not measured: {e:#}"), "—")
            .not_measured()
            .how(how),
    }
}
