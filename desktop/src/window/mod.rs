//! The details window (GTK 4): the request waiting for an answer (who, ticket, what in
//! plain words, for how long, time left; Deny is the default button), else the running
//! session (who, ticket, time left, what is running; End session), else Get help (a
//! support code to read out, with its countdown; Check my computer) or the self-service
//! pages it leads to (Fix it myself, Ask for help). It shows what the agent says now and
//! follows every change; it decides nothing itself.

mod bridge;
mod pages;
mod selfhelp;
mod widgets;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use deskside_agent::session::Watched;
use gtk4 as gtk;
use gtk4::glib;
use gtk4::prelude::*;

use self::bridge::Update;
pub use self::pages::Opened;
use self::pages::Pages;

/// How often the window redraws its countdowns and takes the agent's news.
const TICK: Duration = Duration::from_millis(250);

/// Runs the window until the user closes it. GTK reads no arguments of ours.
pub fn run(socket: PathBuf, opened: Opened) -> anyhow::Result<glib::ExitCode> {
    let (commands, updates) = bridge::start(socket)?;
    let app = gtk::Application::builder()
        .flags(gtk::gio::ApplicationFlags::NON_UNIQUE)
        .build();
    let updates = Rc::new(RefCell::new(Some(updates)));
    app.connect_activate(move |app| {
        let Some(updates) = updates.borrow_mut().take() else {
            return;
        };
        let pages = Rc::new(Pages::build(app, commands.clone(), opened));
        let state: Rc<RefCell<Option<Watched>>> = Rc::new(RefCell::new(None));
        pages.window.present();
        glib::timeout_add_local(TICK, move || {
            loop {
                match updates.try_recv() {
                    Ok(Update::State(w)) => *state.borrow_mut() = Some(*w),
                    Ok(Update::Said(m)) => pages.say(&m),
                    Ok(Update::Failed(m)) => pages.say(&m),
                    Ok(Update::Checked(c)) => pages.checked(&c),
                    Ok(Update::Fixes(list)) => {
                        pages.fix.loaded();
                        pages.fix.fixes(list);
                    }
                    Ok(Update::Fixed(o)) => pages.fix.fixed(&o),
                    Ok(Update::FixRefused(m)) => pages.fix.refused(&m),
                    Ok(Update::Asked(a)) => pages.ask.asked(&a),
                    Ok(Update::AskRefused(m)) => pages.ask.refused(&m),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        return glib::ControlFlow::Break;
                    }
                }
            }
            if let Some(w) = state.borrow().as_ref() {
                pages.show(w, deskside_agent::now_secs());
            }
            glib::ControlFlow::Continue
        });
    });
    Ok(app.run_with_args::<&str>(&[]))
}
