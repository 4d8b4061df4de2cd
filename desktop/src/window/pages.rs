//! The window's pages (the request, the session, Get help with Check my computer, and
//! the self-service pages of `selfhelp.rs`) and how the agent's state fills them. Every control is a
//! labelled button or check box (the names screen readers read; Tab and Space/Enter
//! reach and press each); Deny is the window's default widget and has the focus when a
//! request shows; Escape closes the window, which answers nothing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use deskside_agent::control::ControlRequest;
use deskside_agent::selfhelp::CheckReport;
use deskside_agent::session::{PendingView, Watched};
use deskside_proto::msg::session::Scope;
use gtk4 as gtk;
use gtk4::prelude::*;
use tokio::sync::mpsc::UnboundedSender;

use super::selfhelp::{AskPage, FixPage, Send};
use super::widgets::{Text, buttons, page};

use crate::texts::{self, window as words};

/// A user-started session lasts this long (the help desk can ask for more).
const SUPPORT_SECS: u64 = 30 * 60;

/// What the window was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Details of this pending request (from its notification).
    Request(u32),
    /// Whatever is current: a pending request, else the session, else Get help.
    Current,
}

/// Which page is on show; the others are hidden, so they leave the accessibility tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Prompt,
    Session,
    Help,
    Fix,
    Ask,
}

#[derive(Debug)]
pub struct Pages {
    pub window: gtk::ApplicationWindow,
    /// In [`Page`] order.
    pages: Rc<[gtk::Box; 5]>,
    /// The page shown when neither a request nor a session is: Get help, Fix or Ask.
    own: Rc<Cell<Page>>,
    pub fix: Rc<FixPage>,
    pub ask: Rc<AskPage>,
    prompt_heading: Text,
    prompt_details: Text,
    prompt_left: Text,
    deny: gtk::Button,
    /// The request on show; the buttons answer this one.
    showing: std::rc::Rc<Cell<Option<u32>>>,
    opened: Opened,
    session_heading: Text,
    session_details: Text,
    code: Text,
    code_left: Text,
    /// "Check my computer"'s findings, in plain words.
    findings: Text,
    switched_off: Text,
    status: Text,
}

impl Pages {
    pub fn build(
        app: &gtk::Application,
        commands: UnboundedSender<ControlRequest>,
        opened: Opened,
    ) -> Pages {
        let outer = gtk::Box::new(gtk::Orientation::Vertical, 0);
        let window = gtk::ApplicationWindow::builder()
            .application(app)
            .title(words::TITLE)
            .default_width(480)
            .child(&outer)
            .build();
        let send: Send = Rc::new(move |req: ControlRequest| {
            let _ = commands.send(req);
        });
        let showing = std::rc::Rc::new(Cell::new(None));

        let prompt = page(&outer);
        let prompt_heading = Text::new(&prompt);
        let prompt_details = Text::new(&prompt);
        let prompt_left = Text::new(&prompt);
        let row = buttons(&prompt);
        let deny = gtk::Button::with_label(words::DENY);
        let allow = gtk::Button::with_label(words::ALLOW);
        row.append(&deny);
        row.append(&allow);
        for (button, approve) in [(&deny, false), (&allow, true)] {
            let (send, showing) = (send.clone(), showing.clone());
            button.connect_clicked(move |_| {
                if let Some(id) = showing.get() {
                    send(if approve {
                        ControlRequest::Approve { id }
                    } else {
                        ControlRequest::Deny { id }
                    });
                }
            });
        }
        window.set_default_widget(Some(&deny));
        let escape = gtk::ShortcutController::new();
        escape.add_shortcut(gtk::Shortcut::new(
            gtk::ShortcutTrigger::parse_string("Escape"),
            Some(gtk::NamedAction::new("window.close")),
        ));
        window.add_controller(escape);

        let session = page(&outer);
        let session_heading = Text::new(&session);
        let session_details = Text::new(&session);
        let end = gtk::Button::with_label(words::END_SESSION);
        buttons(&session).append(&end);
        {
            let send = send.clone();
            end.connect_clicked(move |_| send(ControlRequest::End));
        }

        let help = page(&outer);
        Text::new(&help).heading(words::HELP_HEADING);
        let intro = Text::new(&help);
        intro.set(words::HELP_INTRO);
        // Not selectable, so the focus starts on a control, not inside this paragraph.
        intro.0.set_selectable(false);
        let mut offered = Vec::new();
        for scope in Scope::ALL {
            let check = gtk::CheckButton::with_label(texts::scope(scope));
            check.set_active(scope == Scope::Diagnostics);
            help.append(&check);
            offered.push((scope, check));
        }
        let get = gtk::Button::with_label(words::GET_CODE);
        let check = gtk::Button::with_label(words::CHECK);
        let fix_open = gtk::Button::with_label(words::FIX_OPEN);
        let ask_open = gtk::Button::with_label(words::ASK_OPEN);
        let row = buttons(&help);
        row.append(&check);
        row.append(&fix_open);
        row.append(&ask_open);
        row.append(&get);
        let findings = Text::new(&help);
        {
            let (send, findings) = (send.clone(), findings.0.clone());
            check.connect_clicked(move |_| {
                findings.set_text(words::CHECKING);
                send(ControlRequest::Check);
            });
        }
        let send_code = send.clone();
        get.connect_clicked(move |_| {
            let scopes: Vec<Scope> = offered
                .iter()
                .filter(|(_, c)| c.is_active())
                .map(|(s, _)| *s)
                .collect();
            send_code(ControlRequest::Support {
                scopes,
                duration_secs: SUPPORT_SECS,
            });
        });
        // Named by the label before it (GTK 4.8 has no accessible-property API in gtk-rs).
        Text::new(&help).set(words::CODE_NAME);
        let code = Text::new(&help);
        code.heading(words::NO_CODE);
        let code_left = Text::new(&help);

        let switched_off = Text::new(&outer);
        let status = Text::new(&outer);
        status.0.set_margin_start(18);
        status.0.set_margin_bottom(12);
        switched_off.0.set_margin_start(18);
        // The self-service pages, under Get help; Back returns to it.
        let own = Rc::new(Cell::new(Page::Help));
        let boxes: Rc<RefCell<Vec<gtk::Box>>> = Rc::new(RefCell::new(Vec::new()));
        let goto = {
            let (own, boxes) = (own.clone(), boxes.clone());
            move |to: Page| {
                own.set(to);
                for (i, p) in boxes.borrow().iter().enumerate() {
                    p.set_visible(i == to as usize);
                }
            }
        };
        let back = {
            let goto = goto.clone();
            move || goto(Page::Help)
        };
        let fix = Rc::new(FixPage::build(&outer, &send, back.clone()));
        let ask = Rc::new(AskPage::build(&outer, &send, back));
        {
            let (goto, fix, send) = (goto.clone(), fix.clone(), send.clone());
            fix_open.connect_clicked(move |_| {
                goto(Page::Fix);
                fix.opened(&send);
            });
        }
        {
            let ask = ask.clone();
            ask_open.connect_clicked(move |_| {
                goto(Page::Ask);
                ask.opened();
            });
        }
        // The status lines stay last, under whichever page shows.
        outer.reorder_child_after(&switched_off.0, Some(&ask.page));
        outer.reorder_child_after(&status.0, Some(&switched_off.0));
        let pages = Rc::new([prompt, session, help, fix.page.clone(), ask.page.clone()]);
        *boxes.borrow_mut() = pages.to_vec();
        // Until the agent answers: Get help, which tells what Deskside is for.
        if let Some(help) = pages.get(Page::Help as usize) {
            help.set_visible(true);
        }
        Pages {
            window,
            pages,
            own,
            fix,
            ask,
            prompt_heading,
            prompt_details,
            prompt_left,
            deny,
            showing,
            opened,
            session_heading,
            session_details,
            code,
            code_left,
            findings,
            switched_off,
            status,
        }
    }

    fn select(&self, page: Page) {
        for (i, p) in self.pages.iter().enumerate() {
            let on = i == page as usize;
            if p.is_visible() != on {
                p.set_visible(on);
            }
        }
    }

    /// Shows a check's findings, most serious first, each with what the user can do.
    pub fn checked(&self, check: &CheckReport) {
        let mut found: Vec<_> = check.findings.iter().collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let mut text = words::found(found.len());
        for f in found {
            text.push_str(&format!(
                "\n\u{2022} {}: {}\n  {}",
                words::severity(f.severity),
                f.message,
                f.advice
            ));
        }
        self.findings.set(&text);
    }

    /// A line from the agent under the page (an answer taken, or why not).
    pub fn say(&self, message: &str) {
        self.status.set(message);
    }

    /// Fills the page that fits `w` now: a pending request, else the session, else help.
    pub fn show(&self, w: &Watched, now: u64) {
        let s = &w.status;
        self.switched_off
            .set(if s.disabled { words::SWITCHED_OFF } else { "" });
        let wanted = match self.opened {
            Opened::Request(id) => s.pending.iter().find(|p| p.id == id),
            Opened::Current => None,
        };
        if let Some(p) = wanted.or_else(|| s.pending.first()) {
            self.show_request(p, now);
        } else if let Some(g) = &s.active {
            self.showing.set(None);
            self.session_heading
                .heading(&texts::session_summary(&g.technician));
            let left = g.expires_at_secs.saturating_sub(now);
            self.session_details.set(&format!(
                "{}: {} ({})\n{}: {}\n{}: {}\n{}: {}",
                words::TECHNICIAN,
                g.technician,
                texts::tier(g.tier),
                words::TICKET,
                texts::ticket(g.ticket, &w.active_ticket_title),
                words::ENDS_IN,
                texts::countdown(left),
                words::RIGHT_NOW,
                s.activity.as_deref().unwrap_or(words::NOTHING),
            ));
            self.select(Page::Session);
        } else {
            self.showing.set(None);
            match &s.code {
                Some(c) => {
                    self.code.heading(&c.code);
                    let left = texts::countdown(c.expires_at_secs.saturating_sub(now));
                    self.code_left.set(&words::code_valid(&left));
                }
                None => {
                    self.code.heading(words::NO_CODE);
                    self.code_left.set("");
                }
            }
            self.select(self.own.get());
        }
    }

    fn show_request(&self, p: &PendingView, now: u64) {
        let a = &p.ask;
        let fresh = self.showing.get() != Some(p.id);
        self.showing.set(Some(p.id));
        self.prompt_heading
            .heading(&texts::prompt_summary(&a.technician));
        let scopes: Vec<String> = a
            .scopes
            .iter()
            .map(|s| format!("\u{2022} {}", texts::scope(*s)))
            .collect();
        self.prompt_details.set(&format!(
            "{}: {} ({})\n{}: {}\n{}:\n{}\n{}: {}",
            words::TECHNICIAN,
            a.technician,
            texts::tier(a.tier),
            words::TICKET,
            texts::ticket(a.ticket, &a.ticket_title),
            words::MAY,
            scopes.join("\n"),
            words::FOR,
            texts::duration(a.duration_secs),
        ));
        self.prompt_left.set(&format!(
            "{}: {}",
            words::TIME_TO_ANSWER,
            texts::countdown(p.answer_by_secs.saturating_sub(now))
        ));
        self.select(Page::Prompt);
        if fresh {
            // Enter answers no; the user must move to Allow on purpose.
            self.deny.grab_focus();
        }
    }
}
