//! The report as Markdown. Text from the bundle is escaped so it renders as itself.

use super::{Block, Inline, Line};

pub(super) fn render(doc: &[Block]) -> String {
    let mut out = String::new();
    for block in doc {
        block.markdown(&mut out);
        out.push('\n');
    }
    out
}

impl Block {
    fn markdown(&self, out: &mut String) {
        match self {
            Block::Title(s) => out.push_str(&format!("# {}\n", md_text(s))),
            Block::Heading(s) => out.push_str(&format!("## {}\n", md_text(s))),
            Block::Subheading(s) => out.push_str(&format!("### {}\n", md_text(s))),
            Block::Para(line) => out.push_str(&format!("{}\n", md_line(line))),
            Block::List(lines) => {
                for line in lines {
                    out.push_str(&format!("- {}\n", md_line(line)));
                }
            }
            Block::Table { head, rows } => {
                out.push_str(&format!("| {} |\n", head.join(" | ")));
                out.push_str(&format!("|{}\n", "---|".repeat(head.len())));
                for row in rows {
                    let cells: Vec<String> = row.iter().map(md_inline).collect();
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
            }
            Block::Pre { label, text } => {
                // A fence longer than any backtick run inside, so output cannot close it.
                let fence = "`".repeat(longest_run(text, '`').max(2) + 1);
                out.push_str(&format!(
                    "{}\n\n{fence}text\n{text}\n{fence}\n",
                    md_text(label)
                ));
            }
        }
    }
}

fn md_line(line: &Line) -> String {
    line.iter().map(md_inline).collect()
}

fn md_inline(i: &Inline) -> String {
    match i {
        Inline::Text(s) => md_text(s),
        Inline::Strong(s) => format!("**{}**", md_text(s)),
        Inline::Code(s) => {
            let s = s.replace('\n', " ").replace('|', "\\|");
            let ticks = "`".repeat(longest_run(&s, '`') + 1);
            format!(
                "{ticks}{}{ticks}",
                if s.starts_with('`') {
                    format!(" {s} ")
                } else {
                    s
                }
            )
        }
    }
}

/// Plain text that renders as itself: no emphasis, links, HTML or table breaks.
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '<' | '>' | '[' | ']' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for ch in s.chars() {
        run = if ch == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}
