//! The two self-service pages beside Get help: *Fix it myself* (the machine's approved
//! fixes, each with what it changes; the chosen one's parameters as controls that only
//! offer safe values; Run, and how it went) and *Ask for help* (one sentence, Send, and
//! the ticket the help desk got). Every control is labelled for screen readers; the
//! agent checks every value again and the window shows its refusals as it words them.

use std::cell::RefCell;
use std::rc::Rc;

use deskside_agent::control::ControlRequest;
use deskside_agent::selfhelp::{Asked, FixOutcome, SelfFix};
use deskside_proto::msg::agent::MAX_ASK_TEXT_BYTES;
use deskside_proto::msg::script::{ParamKind, ParamSpec};
use gtk4 as gtk;
use gtk4::prelude::*;

use super::widgets::{Text, buttons, page};
use crate::texts::window as words;

/// The most of each output stream the window shows; the signed record keeps it all.
const SHOWN_OUTPUT_CHARS: usize = 2000;

/// Sends a request to the agent (through the bridge thread).
pub type Send = Rc<dyn Fn(ControlRequest)>;

/// A parameter's control, by kind: only values the manifest allows can be chosen.
#[derive(Debug)]
enum Control {
    Choice(gtk::DropDown, Vec<String>),
    Flag(gtk::CheckButton),
    Number(gtk::SpinButton),
    Text(gtk::Entry),
}

impl Control {
    fn value(&self) -> Option<String> {
        match self {
            Control::Choice(d, values) => values.get(d.selected() as usize).cloned(),
            Control::Flag(c) => Some(c.is_active().to_string()),
            Control::Number(s) => Some(s.value_as_int().to_string()),
            Control::Text(e) => Some(e.text().to_string()),
        }
    }
}

/// What the user reads for `p` (its description, else its name).
fn param_name(p: &ParamSpec) -> &str {
    if p.description.is_empty() {
        &p.name
    } else {
        &p.description
    }
}

/// The control for `p`, its default chosen.
fn control(p: &ParamSpec) -> (gtk::Widget, Control) {
    let name = param_name(p);
    let default = p.default.as_deref();
    let (widget, control): (gtk::Widget, Control) = match &p.kind {
        ParamKind::Enum { values } => {
            let shown: Vec<&str> = values.iter().map(String::as_str).collect();
            let d = gtk::DropDown::from_strings(&shown);
            let at = values.iter().position(|v| Some(v.as_str()) == default);
            d.set_selected(at.unwrap_or(0) as u32);
            (d.clone().upcast(), Control::Choice(d, values.clone()))
        }
        ParamKind::Bool => {
            let c = gtk::CheckButton::with_label(name);
            c.set_active(default == Some("true"));
            (c.clone().upcast(), Control::Flag(c))
        }
        ParamKind::Integer { min, max } => {
            let s = gtk::SpinButton::with_range(*min as f64, *max as f64, 1.0);
            let value = default.and_then(|d| d.parse::<i64>().ok()).unwrap_or(*min);
            s.set_value(value as f64);
            (s.clone().upcast(), Control::Number(s))
        }
        ParamKind::String { max_len, .. } => {
            let e = gtk::Entry::builder()
                .max_length(i32::try_from(*max_len).unwrap_or(i32::MAX))
                .text(default.unwrap_or(""))
                .build();
            (e.clone().upcast(), Control::Text(e))
        }
    };
    (widget, control)
}

/// At most `max` characters of `s`, with a mark where it was cut.
fn excerpt(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}\u{2026}", s.get(..at).unwrap_or(s)),
        None => s.to_owned(),
    }
}

/// The chosen fix: its name and its parameters' controls, by parameter name.
type Chosen = Rc<RefCell<Option<(String, Vec<(String, Control)>)>>>;

/// *Fix it myself*.
#[derive(Debug)]
pub struct FixPage {
    pub page: gtk::Box,
    list: gtk::Box,
    chosen: Text,
    params: gtk::Box,
    run: gtk::Button,
    outcome: Text,
    /// The chosen fix's name and its parameters' controls.
    controls: Chosen,
}

impl FixPage {
    pub fn build(outer: &gtk::Box, send: &Send, back: impl Fn() + 'static) -> FixPage {
        let page = page(outer);
        Text::new(&page).heading(words::FIX_HEADING);
        let intro = Text::new(&page);
        intro.set(words::FIX_INTRO);
        intro.0.set_selectable(false);
        let list = gtk::Box::new(gtk::Orientation::Vertical, 6);
        page.append(&list);
        let chosen = Text::new(&page);
        chosen.set(words::FIX_CHOOSE);
        chosen.0.set_selectable(false);
        let params = gtk::Box::new(gtk::Orientation::Vertical, 6);
        page.append(&params);
        let row = buttons(&page);
        let back_button = gtk::Button::with_label(words::BACK);
        let run = gtk::Button::with_label(words::RUN);
        run.set_sensitive(false);
        row.append(&back_button);
        row.append(&run);
        back_button.connect_clicked(move |_| back());
        let outcome = Text::new(&page);
        let controls: Chosen = Rc::new(RefCell::new(None));
        {
            let (send, controls, outcome) = (send.clone(), controls.clone(), outcome.0.clone());
            run.connect_clicked(move |_| {
                let Some((name, params)) = &*controls.borrow() else {
                    return;
                };
                let params = params
                    .iter()
                    .filter_map(|(n, c)| c.value().map(|v| (n.clone(), v)))
                    .collect();
                outcome.set_text(words::RUNNING);
                send(ControlRequest::SelfFix {
                    name: name.clone(),
                    params,
                });
            });
        }
        FixPage {
            page,
            list,
            chosen,
            params,
            run,
            outcome,
            controls,
        }
    }

    /// Fills the list with the machine's fixes: a button per fix, what it changes under it.
    pub fn fixes(self: &Rc<Self>, fixes: Vec<SelfFix>) {
        // A fresh list: nothing chosen until the user chooses again.
        for shown in [&self.list, &self.params] {
            while let Some(child) = shown.first_child() {
                shown.remove(&child);
            }
        }
        *self.controls.borrow_mut() = None;
        self.run.set_sensitive(false);
        self.chosen.set(words::FIX_CHOOSE);
        if fixes.is_empty() {
            Text::new(&self.list).set(words::NO_FIXES);
        }
        for fix in fixes {
            let button = gtk::Button::with_label(&fix.description);
            button.set_halign(gtk::Align::Start);
            self.list.append(&button);
            Text::new(&self.list).set(&words::fix_changes(&fix.changes));
            let me = Rc::clone(self);
            button.connect_clicked(move |_| me.choose(&fix));
        }
    }

    /// Shows `fix`'s parameters, defaults chosen, and enables Run.
    fn choose(&self, fix: &SelfFix) {
        while let Some(child) = self.params.first_child() {
            self.params.remove(&child);
        }
        self.chosen.heading(&words::fix_chosen(&fix.description));
        let mut controls = Vec::new();
        for p in &fix.params {
            let (widget, c) = control(p);
            if !matches!(c, Control::Flag(_)) {
                // The name before the control, which names it for screen readers too
                // (GTK 4.8's gtk-rs has no accessible-property API).
                let label = Text::new(&self.params);
                label.set(param_name(p));
                label.0.set_selectable(false);
                label.0.set_mnemonic_widget(Some(&widget));
            }
            self.params.append(&widget);
            controls.push((p.name.clone(), c));
        }
        *self.controls.borrow_mut() = Some((fix.name.clone(), controls));
        self.outcome.set("");
        self.run.set_sensitive(true);
        self.run.grab_focus();
    }

    /// Asks the agent for the fixes again (each time the page opens).
    pub fn opened(&self, send: &Send) {
        self.outcome.set(words::FIX_LOADING);
        send(ControlRequest::SelfFixes);
    }

    pub fn loaded(&self) {
        if self.outcome.0.text() == words::FIX_LOADING {
            self.outcome.set("");
        }
    }

    pub fn fixed(&self, outcome: &FixOutcome) {
        let mut text = words::fix_ended(&outcome.result);
        for (title, out) in [
            (words::OUTPUT, &outcome.stdout),
            (words::ERRORS, &outcome.stderr),
        ] {
            let out = out.trim_end();
            if !out.is_empty() {
                text.push_str(&format!("\n{title}:\n{}", excerpt(out, SHOWN_OUTPUT_CHARS)));
            }
        }
        self.outcome.set(&text);
    }

    pub fn refused(&self, reason: &str) {
        self.outcome.set(&words::fix_refused(reason));
    }
}

/// *Ask for help*.
#[derive(Debug)]
pub struct AskPage {
    pub page: gtk::Box,
    entry: gtk::Entry,
    answer: Text,
}

impl AskPage {
    pub fn build(outer: &gtk::Box, send: &Send, back: impl Fn() + 'static) -> AskPage {
        let page = page(outer);
        Text::new(&page).heading(words::ASK_HEADING);
        let intro = Text::new(&page);
        intro.set(words::ASK_INTRO);
        intro.0.set_selectable(false);
        let name = Text::new(&page);
        name.set(words::ASK_NAME);
        name.0.set_selectable(false);
        let entry = gtk::Entry::builder()
            .max_length(i32::try_from(MAX_ASK_TEXT_BYTES).unwrap_or(i32::MAX))
            .build();
        // Named for screen readers by the label before it.
        name.0.set_mnemonic_widget(Some(&entry));
        page.append(&entry);
        let row = buttons(&page);
        let back_button = gtk::Button::with_label(words::BACK);
        let send_button = gtk::Button::with_label(words::SEND);
        row.append(&back_button);
        row.append(&send_button);
        back_button.connect_clicked(move |_| back());
        let answer = Text::new(&page);
        let submit = {
            let (send, entry, answer) = (send.clone(), entry.clone(), answer.0.clone());
            move || {
                let text = entry.text().trim().to_owned();
                if text.is_empty() {
                    answer.set_text(words::ASK_EMPTY);
                    return;
                }
                answer.set_text(words::SENDING);
                send(ControlRequest::AskForHelp { text });
            }
        };
        let also = submit.clone();
        send_button.connect_clicked(move |_| submit());
        // Enter in the text box sends, too.
        entry.connect_activate(move |_| also());
        AskPage {
            page,
            entry,
            answer,
        }
    }

    pub fn opened(&self) {
        self.entry.grab_focus();
    }

    pub fn asked(&self, asked: &Asked) {
        match asked.ticket {
            Some(n) => {
                self.answer.set(&words::asked(n));
                self.entry.set_text("");
            }
            None => self.answer.set(&asked.message),
        }
    }

    pub fn refused(&self, reason: &str) {
        self.answer.set(&words::ask_refused(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_cut_on_characters_and_say_so() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("äöüß", 2), "äö\u{2026}");
    }
}
