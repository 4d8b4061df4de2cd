//! Reading the bundle's snapshots and script runs: each checked against its SHA-256 and
//! parsed, in the order the timeline recorded them; what cannot be read is said, not
//! skipped.

use std::collections::HashMap;

use deskside_proto::evidence::{self, Evidence, EvidenceKind};
use deskside_proto::msg::diag::Snapshot;
use deskside_proto::msg::script::RunRecord;
use sha2::{Digest, Sha256};

use super::ItemSource;
use crate::bundle::{Bundle, BundleItem};

/// The bundle's items, parsed, in timeline order, plus what could not be read.
pub(super) struct Loaded<'b> {
    pub(super) snapshots: Vec<(&'b BundleItem, Snapshot)>,
    pub(super) runs: Vec<(&'b BundleItem, RunRecord)>,
    pub(super) snapshot_problems: Vec<String>,
    pub(super) run_problems: Vec<String>,
}

pub(super) fn load_all<'b>(bundle: &'b Bundle, items: ItemSource<'_>) -> Loaded<'b> {
    // Items in the order the timeline recorded them; unrecorded ones after, by time.
    let seq: HashMap<&str, u64> = bundle
        .timeline
        .iter()
        .rev()
        .filter_map(|e| Some((e.evidence_sha256.as_deref()?, e.seq)))
        .collect();
    let mut ordered: Vec<&BundleItem> = bundle.items.iter().collect();
    ordered.sort_by_key(|i| {
        let s = seq.get(i.sha256.as_str()).copied().unwrap_or(u64::MAX);
        (s, i.created_at_secs)
    });
    let mut loaded = Loaded {
        snapshots: Vec::new(),
        runs: Vec::new(),
        snapshot_problems: Vec::new(),
        run_problems: Vec::new(),
    };
    for item in ordered {
        match item.kind.parse() {
            Ok(EvidenceKind::Snapshot) => match load(items, item) {
                Ok(s) => loaded.snapshots.push((item, s)),
                Err(p) => loaded.snapshot_problems.push(p.to_string()),
            },
            Ok(EvidenceKind::ScriptRun) => match load(items, item) {
                Ok(r) => loaded.runs.push((item, r)),
                Err(p) => loaded.run_problems.push(p.to_string()),
            },
            _ => {}
        }
    }
    loaded
}

/// Why a bundled item is left out of the report; shown in it, naming the item.
#[derive(Debug, thiserror::Error)]
#[error("item {sha256} ({kind}) could not be read: {why}")]
struct Unreadable {
    sha256: String,
    kind: String,
    why: Why,
}

#[derive(Debug, thiserror::Error)]
enum Why {
    #[error("its bytes are missing")]
    Missing,
    #[error("its bytes do not match its SHA-256")]
    Altered,
    #[error("it does not parse as a {kind}: {source}")]
    Unparsable {
        kind: EvidenceKind,
        source: evidence::OpenError,
    },
}

fn load<T: Evidence>(items: ItemSource<'_>, item: &BundleItem) -> Result<T, Unreadable> {
    let why = match items(&item.sha256) {
        None => Why::Missing,
        Some(bytes) if !hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(&item.sha256) => {
            Why::Altered
        }
        Some(bytes) => match evidence::open_bytes(&bytes) {
            Ok(v) => return Ok(v),
            Err(source) => Why::Unparsable {
                kind: T::KIND,
                source,
            },
        },
    };
    Err(Unreadable {
        sha256: item.sha256.clone(),
        kind: item.kind.clone(),
        why,
    })
}
