//! Every word the helper shows the user, in one place: translating the helper is
//! translating this file. Scopes are said as what they let someone do on this computer,
//! never as the policy names (`scripts:l1`).

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::Scope;

/// The application name notification servers show and group by.
pub const APP_NAME: &str = "Deskside";
/// The icon name (installed under hicolor by the package).
pub const ICON: &str = "deskside-desktop";

pub const ALLOW: &str = "Allow";
pub const DENY: &str = "Deny";
pub const DETAILS: &str = "Details";
pub const END_SESSION: &str = "End session";
pub const ANSWER_FAILED: &str = "Deskside could not pass on your answer";

/// What a scope lets the technician do, as a line the user can judge.
pub fn scope(scope: Scope) -> &'static str {
    match scope {
        Scope::Diagnostics => "see this computer's system information",
        Scope::ScriptsL1 => "run approved fixes of level 1",
        Scope::ScriptsL2 => "run approved fixes of level 2",
        Scope::ScriptsL3 => "run approved fixes of level 3",
        Scope::Files => "copy files from this computer",
    }
}

/// The technician's tier as the help desk says it.
pub fn tier(tier: Tier) -> String {
    match tier {
        Tier::L1 => "help desk, level 1".into(),
        Tier::L2 => "desktop support, level 2".into(),
        Tier::L3 => "specialist, level 3".into(),
    }
}

/// `#42 "Printer jams"`, or `#42` when the title is unknown.
pub fn ticket(number: u64, title: &str) -> String {
    if title.is_empty() {
        format!("#{number}")
    } else {
        format!("#{number} \u{201c}{title}\u{201d}")
    }
}

/// `25 minutes`, `1 hour 5 minutes`, `40 seconds`.
pub fn duration(secs: u64) -> String {
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let unit = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match (h, m) {
        (0, 0) => unit(secs, "second", "seconds"),
        (0, m) => unit(m, "minute", "minutes"),
        (h, 0) => unit(h, "hour", "hours"),
        (h, m) => format!(
            "{} {}",
            unit(h, "hour", "hours"),
            unit(m, "minute", "minutes")
        ),
    }
}

/// A countdown: `4:05`.
pub fn countdown(secs: u64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// The prompt's title line.
pub fn prompt_summary(technician: &str) -> String {
    format!("{technician} asks to help on this computer")
}

/// The prompt's body: who, for which ticket, to do what, for how long, answer by when.
pub fn prompt_body(
    technician: &str,
    tier: Tier,
    ticket: &str,
    scopes: &[Scope],
    duration_secs: u64,
    answer_in_secs: u64,
) -> String {
    let mut body = format!(
        "{technician} ({}) asks, for ticket {ticket}, to:\n",
        self::tier(tier)
    );
    for s in scopes {
        body.push_str(&format!("\u{2022} {}\n", scope(*s)));
    }
    body.push_str(&format!(
        "for {}. Answer within {}; no answer means no.",
        duration(duration_secs),
        countdown(answer_in_secs)
    ));
    body
}

/// The running session's title line.
pub fn session_summary(technician: &str) -> String {
    format!("{technician} is helping on this computer")
}

/// The running session's body; `left` is a [`duration`].
pub fn session_body(ticket: &str, left: &str, activity: Option<&str>) -> String {
    format!(
        "For ticket {ticket}; ends in {left}.\nRight now: {}",
        activity.unwrap_or("nothing")
    )
}

/// The details window's words.
pub mod window {
    pub const TITLE: &str = "Deskside";
    pub const TECHNICIAN: &str = "Technician";
    pub const TICKET: &str = "Ticket";
    pub const MAY: &str = "Would be able to";
    pub const FOR: &str = "For";
    pub const TIME_TO_ANSWER: &str = "Time left to answer";
    pub const ENDS_IN: &str = "Ends in";
    pub const RIGHT_NOW: &str = "Right now";
    pub const NOTHING: &str = "nothing";
    pub const DENY: &str = "Deny";
    pub const ALLOW: &str = "Allow";
    pub const END_SESSION: &str = "End session";
    pub const HELP_HEADING: &str = "Get help from the help desk";
    pub const HELP_INTRO: &str = "Get a code and read it to the help desk engineer on the phone. \
        They can then help on this computer with what you tick below, for 30 minutes.";
    pub const GET_CODE: &str = "Get a support code";
    pub const CODE_NAME: &str = "Support code";
    pub const NO_CODE: &str = "No code yet";
    pub const SWITCHED_OFF: &str =
        "Deskside is switched off on this computer: nobody can connect (deskside-agent enable).";

    pub const CHECK: &str = "Check my computer";
    pub const CHECKING: &str = "Checking this computer\u{2026}";
    pub const NO_PROBLEMS: &str = "No problems found.";

    /// What a finding's severity means to the user.
    pub fn severity(s: deskside_proto::msg::diag::Severity) -> &'static str {
        use deskside_proto::msg::diag::Severity;
        match s {
            Severity::Critical => "Needs attention now",
            Severity::Warning => "Worth a look",
            Severity::Info => "For your information",
        }
    }

    /// The heading over a check's findings.
    pub fn found(n: usize) -> String {
        match n {
            0 => NO_PROBLEMS.to_owned(),
            1 => "Deskside found 1 thing on this computer:".to_owned(),
            n => format!("Deskside found {n} things on this computer:"),
        }
    }

    pub const FIX_OPEN: &str = "Fix it myself";
    pub const FIX_HEADING: &str = "Fix it myself";
    pub const FIX_INTRO: &str = "Fixes your help desk has approved for this computer. \
        Choose one to see what it does, then run it.";
    pub const FIX_LOADING: &str = "Asking Deskside for the fixes on this computer\u{2026}";
    pub const NO_FIXES: &str = "Your help desk has not offered any fixes for this computer yet.";
    pub const FIX_CHOOSE: &str = "Choose a fix above.";
    pub const RUN: &str = "Run this fix";
    pub const RUNNING: &str = "Running the fix\u{2026}";
    pub const OUTPUT: &str = "What it said";
    pub const ERRORS: &str = "Errors it reported";
    pub const ASK_OPEN: &str = "Ask for help";
    pub const ASK_HEADING: &str = "Ask the help desk for help";
    pub const ASK_INTRO: &str = "Write in one sentence what is wrong. Deskside sends it to the \
        help desk with a fresh check of this computer and the results of the fixes you ran.";
    pub const ASK_NAME: &str = "What is wrong";
    pub const SEND: &str = "Send";
    pub const SENDING: &str = "Sending your request\u{2026}";
    pub const ASK_EMPTY: &str = "Write what is wrong first.";
    pub const BACK: &str = "Back to Get help";

    /// A fix in the list: what it changes, in the catalog's words.
    pub fn fix_changes(changes: &str) -> String {
        format!("Changes: {changes}")
    }

    /// The chosen fix's heading.
    pub fn fix_chosen(description: &str) -> String {
        format!("Fix: {description}")
    }

    /// How a run ended: exit status and time taken.
    pub fn fix_ended(result: &deskside_proto::msg::script::RunResult) -> String {
        let took = format!("{:.1} s", result.duration_ms as f64 / 1000.0);
        if result.timed_out {
            format!("The fix took too long and was stopped after {took}.")
        } else if result.cancelled {
            "The fix was stopped before it finished.".to_owned()
        } else {
            match (result.exit_code, result.signal) {
                (Some(0), _) => format!("The fix finished: exit status 0 (done) after {took}."),
                (Some(n), _) => format!(
                    "The fix finished with exit status {n} (it reports a problem) after {took}."
                ),
                (None, Some(s)) => format!("The fix was stopped by signal {s} after {took}."),
                (None, None) => format!("The fix ended after {took}."),
            }
        }
    }

    /// A fix the agent did not run, with its reason.
    pub fn fix_refused(reason: &str) -> String {
        format!("The fix was not run: {reason}")
    }

    /// The ticket the help desk opened.
    pub fn asked(ticket: u64) -> String {
        format!("Your request is ticket #{ticket}. The help desk will get back to you.")
    }

    /// A request for help not taken, with its reason.
    pub fn ask_refused(reason: &str) -> String {
        format!("Your request was not sent: {reason}")
    }

    /// Under the code: how to use it and how long it lasts.
    pub fn code_valid(left: &str) -> String {
        format!("Read it to the help desk engineer. It works once, for {left} more.")
    }
}

/// The agent service cannot be reached.
pub fn agent_unreachable(socket: &str) -> String {
    format!(
        "cannot reach the Deskside agent at {socket}; it may be stopped (systemctl status deskside-agent). Retrying."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_says_who_what_and_how_long_in_plain_words() {
        let body = prompt_body(
            "ann",
            Tier::L1,
            &ticket(42, "Printer jams"),
            &[Scope::Diagnostics, Scope::ScriptsL1, Scope::Files],
            1800,
            95,
        );
        assert_eq!(
            body,
            "ann (help desk, level 1) asks, for ticket #42 \u{201c}Printer jams\u{201d}, to:\n\
             \u{2022} see this computer's system information\n\
             \u{2022} run approved fixes of level 1\n\
             \u{2022} copy files from this computer\n\
             for 30 minutes. Answer within 1:35; no answer means no."
        );
        assert!(!body.contains("scripts:"));
    }

    #[test]
    fn durations_and_clock_read_naturally() {
        assert_eq!(duration(40), "40 seconds");
        assert_eq!(duration(60), "1 minute");
        assert_eq!(duration(3900), "1 hour 5 minutes");
        assert_eq!(duration(7200), "2 hours");
        assert_eq!(ticket(7, ""), "#7");
    }
}
