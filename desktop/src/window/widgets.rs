//! The window's building blocks every page uses: a page, a row of buttons, and a label
//! that keeps its text.

use gtk4 as gtk;
use gtk4::glib;
use gtk4::prelude::*;

/// A label that keeps its text: setting the same text again is a no-op, so screen
/// readers are not told of changes that are not.
#[derive(Debug)]
pub(super) struct Text(pub(super) gtk::Label);

impl Text {
    pub(super) fn new(page: &gtk::Box) -> Text {
        let label = gtk::Label::builder()
            .xalign(0.0)
            .wrap(true)
            .selectable(true)
            .build();
        page.append(&label);
        Text(label)
    }

    pub(super) fn set(&self, text: &str) {
        if self.0.text() != text {
            self.0.set_text(text);
        }
    }

    pub(super) fn heading(&self, text: &str) {
        // Not selectable: the first selectable label takes the focus, text all selected.
        self.0.set_selectable(false);
        let markup = format!("<big><b>{}</b></big>", glib::markup_escape_text(text));
        if self.0.label() != markup {
            self.0.set_markup(&markup);
        }
    }
}

pub(super) fn page(outer: &gtk::Box) -> gtk::Box {
    let page = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(12)
        .margin_top(18)
        .margin_bottom(18)
        .margin_start(18)
        .margin_end(18)
        .build();
    page.set_visible(false);
    outer.append(&page);
    page
}

pub(super) fn buttons(page: &gtk::Box) -> gtk::Box {
    let row = gtk::Box::builder()
        .orientation(gtk::Orientation::Horizontal)
        .spacing(12)
        .halign(gtk::Align::End)
        .build();
    page.append(&row);
    row
}
