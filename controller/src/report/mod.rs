//! The human-readable report of an evidence bundle (`report.md`, `report.html`): summary,
//! findings, what was tried, consent, what changed, and the evidence list.
//!
//! The sections (`sections.rs`, `diff.rs`) are built once as a small document model
//! (`Block`) and rendered by `markdown.rs` and `html.rs`, so both say the same thing.
//!
//! `load.rs` reads the bundle's items; `words.rs` says sizes, times and long output
//! briefly.

mod diff;
mod html;
mod load;
mod markdown;
mod sections;
#[cfg(test)]
mod tests;
mod words;

use crate::bundle::Bundle;
use load::{Loaded, load_all};
use words::{clip, duration, excerpt, ms_time, short, size};

/// Fetches an item's bytes by sha256 (from the bundle's items/ dir or the blob store).
pub type ItemSource<'a> = &'a dyn Fn(&str) -> Option<Vec<u8>>;

pub fn markdown(bundle: &Bundle, items: ItemSource<'_>) -> String {
    markdown::render(&sections::document(bundle, items))
}

/// One self-contained file: inline CSS, no scripts, no external links, fonts or images.
pub fn html(bundle: &Bundle, items: ItemSource<'_>) -> String {
    html::render(&sections::document(bundle, items))
}

/// What changed between two snapshots of one machine, one plain-language line each.
pub fn snapshot_changes(
    first: &deskside_proto::msg::diag::Snapshot,
    last: &deskside_proto::msg::diag::Snapshot,
) -> Vec<String> {
    diff::changes(first, last)
}

/// A piece of text in a line.
#[derive(Debug, Clone)]
enum Inline {
    Text(String),
    Code(String),
    Strong(String),
}

type Line = Vec<Inline>;

#[derive(Debug, Clone)]
enum Block {
    Title(String),
    Heading(String),
    Subheading(String),
    Para(Line),
    List(Vec<Line>),
    Table {
        head: Vec<&'static str>,
        rows: Vec<Vec<Inline>>,
    },
    Pre {
        label: String,
        text: String,
    },
}

fn text(s: impl Into<String>) -> Inline {
    Inline::Text(s.into())
}

fn code(s: impl Into<String>) -> Inline {
    Inline::Code(s.into())
}

fn para(s: impl Into<String>) -> Block {
    Block::Para(vec![text(s)])
}

/// `- **label:** value`
fn field(label: &str, value: impl Into<String>) -> Line {
    vec![
        Inline::Strong(format!("{label}:")),
        text(format!(" {}", value.into())),
    ]
}
