//! The sample evidence bundle the RT and webhook tests push: a ticket as the store shows
//! it and a bundle laid out the way escalation writes one.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use deskside_controller::bundle::{
    BUNDLE_FORMAT, Bundle, BundleItem, EVIDENCE_JSON, Escalation, ITEMS_DIR, REPORT_HTML, REPORT_MD,
};
use deskside_controller::evidence::{BlobStore, DirBlobs};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::tech::{Sla, TicketSummary};

/// An evidence bundle written the way escalation lays it out, for the adapter tests.
#[derive(Debug, Clone)]
pub struct SampleBundle {
    pub dir: PathBuf,
    pub bundle: Bundle,
    pub report_md: String,
    /// Every file an adapter must attach: name outside → bytes.
    pub files: Vec<(String, Vec<u8>)>,
}

/// A Deskside ticket as the store shows it.
pub fn sample_ticket(number: u64, title: &str) -> TicketSummary {
    TicketSummary {
        number,
        title: title.to_owned(),
        status: "escalated".into(),
        tier: Tier::L1,
        priority: "high".into(),
        requester: "Pat Doe".into(),
        owner: Some("alice".into()),
        agent: Some("ag-1".into()),
        created_by: "alice".into(),
        created_at_secs: 1_700_000_000,
        first_response_at_secs: Some(1_700_000_060),
        resolved_at_secs: None,
        evidence_count: 4,
        sla: Sla::default(),
        external_ref: None,
        sync_state: None,
    }
}

/// Writes `evidence.json`, `items/<sha256>` (binary bytes 0x00..=0xff, non-UTF-8 text,
/// JSON, and 300 KiB of noise), `report.md` and `report.html` under `dir`.
pub fn write_sample_bundle(dir: &Path, ticket: &TicketSummary) -> Result<SampleBundle> {
    let items_dir = dir.join(ITEMS_DIR);
    fs::create_dir_all(&items_dir)?;
    let mut noise = Vec::with_capacity(300 * 1024);
    let mut x: u32 = 0x1234_5678;
    while noise.len() < 300 * 1024 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        noise.extend_from_slice(&x.to_be_bytes());
    }
    let contents: Vec<(&str, Vec<u8>)> = vec![
        ("script_run", (0..=255u8).collect()),
        (
            "script_run",
            b"caf\xe9 cr\xe8me\r\n\xff\xfe\x00 end \x80\n".to_vec(),
        ),
        (
            "snapshot",
            "{\"hostname\":\"pc-042\",\"note\":\"Gr\u{fc}\u{df}e \u{2713}\"}\n"
                .as_bytes()
                .to_vec(),
        ),
        ("snapshot", noise),
    ];
    // The project's own content addressing names the files.
    let hasher = DirBlobs::new(dir.join(".hash-scratch"));
    let mut items = Vec::new();
    let mut files = Vec::new();
    for (kind, bytes) in contents {
        let sha256 = hasher.put(&bytes)?;
        fs::write(items_dir.join(&sha256), &bytes)?;
        items.push(BundleItem {
            sha256: sha256.clone(),
            kind: kind.to_owned(),
            size_bytes: u64::try_from(bytes.len())?,
            agent: Some("ag-1".into()),
            created_at_secs: 1_700_000_100,
            signer: deskside_controller::bundle::Signer::of_kind(kind),
            signature: None,
            redaction: Vec::new(),
        });
        files.push((sha256, bytes));
    }
    fs::remove_dir_all(dir.join(".hash-scratch"))?;
    files.sort();

    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        generated_at_secs: 1_700_000_200,
        generator: "deskside tests".into(),
        ticket: ticket.clone(),
        escalation: Some(Escalation {
            from: Tier::L1,
            to: Tier::L2,
            note: "printer spooler keeps crashing".into(),
            by: "alice".into(),
            at_secs: 1_700_000_150,
        }),
        timeline: Vec::new(),
        items,
        agents: Vec::new(),
        ca_pem: String::new(),
        controller_cert_pem: String::new(),
    };
    let evidence = serde_json::to_vec_pretty(&bundle)?;
    fs::write(dir.join(EVIDENCE_JSON), &evidence)?;
    let report_md = format!(
        "# Deskside ticket #{} \u{2014} {}\n\nRequester: Pat Doe. Gr\u{fc}\u{df}e from L1.\n\n\
         ## Evidence\n\n{}\n",
        ticket.number,
        ticket.title,
        bundle
            .items
            .iter()
            .map(|i| format!("- {} `{}` ({} bytes)", i.kind, i.sha256, i.size_bytes))
            .collect::<Vec<_>>()
            .join("\n")
    );
    fs::write(dir.join(REPORT_MD), &report_md)?;
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>#{n}</title><h1>Ticket #{n} \u{2014} \
         Gr\u{fc}\u{df}e</h1>\n",
        n = ticket.number
    );
    fs::write(dir.join(REPORT_HTML), &html)?;
    files.push((EVIDENCE_JSON.to_owned(), evidence));
    files.push((REPORT_HTML.to_owned(), html.into_bytes()));
    Ok(SampleBundle {
        dir: dir.to_owned(),
        bundle,
        report_md,
        files,
    })
}
