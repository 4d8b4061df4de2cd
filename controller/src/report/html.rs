//! The report as one self-contained HTML file: inline CSS, no scripts, nothing fetched.
//! Every piece of text from the bundle goes through [`escape`].

use super::{Block, Inline};

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;\
padding:0 1rem;color:#1b1b1b;line-height:1.45}\
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;margin-top:2rem}\
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}\
th,td{border:1px solid #ccc;padding:.2rem .45rem;text-align:left;vertical-align:top}\
th{background:#f0f0f0}code{font-family:ui-monospace,monospace;font-size:.85em;\
overflow-wrap:anywhere}pre{background:#f6f6f6;border:1px solid #ddd;padding:.6rem;\
overflow-x:auto;font-size:.85rem}";

pub(super) fn render(doc: &[Block]) -> String {
    let title = doc.iter().find_map(|b| match b {
        Block::Title(s) => Some(s.as_str()),
        _ => None,
    });
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(&format!(
        "<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(title.unwrap_or("Deskside report"))
    ));
    for block in doc {
        block_html(block, &mut out);
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn block_html(block: &Block, out: &mut String) {
    match block {
        Block::Title(s) => out.push_str(&format!("<h1>{}</h1>\n", escape(s))),
        Block::Heading(s) => out.push_str(&format!("<h2>{}</h2>\n", escape(s))),
        Block::Subheading(s) => out.push_str(&format!("<h3>{}</h3>\n", escape(s))),
        Block::Para(line) => out.push_str(&format!("<p>{}</p>\n", line_html(line))),
        Block::List(lines) => {
            out.push_str("<ul>\n");
            for line in lines {
                out.push_str(&format!("<li>{}</li>\n", line_html(line)));
            }
            out.push_str("</ul>\n");
        }
        Block::Table { head, rows } => {
            out.push_str("<table>\n<thead><tr>");
            for h in head {
                out.push_str(&format!("<th>{}</th>", escape(h)));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for row in rows {
                out.push_str("<tr>");
                for cell in row {
                    out.push_str(&format!("<td>{}</td>", inline_html(cell)));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        Block::Pre { label, text } => {
            out.push_str(&format!(
                "<p>{}</p>\n<pre>{}</pre>\n",
                escape(label),
                escape(text)
            ));
        }
    }
}

fn line_html(line: &[Inline]) -> String {
    line.iter().map(inline_html).collect()
}

fn inline_html(i: &Inline) -> String {
    match i {
        Inline::Text(s) => escape(s),
        Inline::Code(s) => format!("<code>{}</code>", escape(s)),
        Inline::Strong(s) => format!("<strong>{}</strong>", escape(s)),
    }
}

/// HTML-escapes text. A `/` right after `:` becomes `&#47;` too, so a URL in ticket or
/// script text shows as text and the file never contains `http://` for anything to follow.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let mut prev = '\0';
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '/' if prev == ':' => out.push_str("&#47;"),
            c => out.push(c),
        }
        prev = c;
    }
    out
}
