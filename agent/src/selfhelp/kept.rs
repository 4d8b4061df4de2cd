//! The signed records of self-fix runs, kept on the machine until the user asks for help:
//! they then travel with the request as evidence. Each is stored as the spool stores a
//! delivery (the codec's bounded encoding, written atomically in the 0700 state dir).

use std::path::{Path, PathBuf};

use deskside_proto::codec;
use deskside_proto::msg::agent::{AgentNotice, Delivery, Requester, SignedItem};
use tracing::warn;

use crate::state::{StateDir, write_atomic};

/// Most runs kept: an ask carries at most `MAX_ASK_RUNS` of them, and a user who runs
/// fixes for weeks without asking for help should not fill the disk. The oldest go first.
pub const MAX_KEPT: usize = 20;
const SUFFIX: &str = ".run";

fn dir(state: &StateDir) -> PathBuf {
    state.root().join("self-service-runs")
}

/// Keeps `item` (made for `who`), dropping the oldest beyond [`MAX_KEPT`].
pub fn put(state: &StateDir, who: &Requester, item: &SignedItem) -> Result<(), String> {
    let dir = dir(state);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let delivery = Delivery {
        key: item.key.clone(),
        notice: AgentNotice::Evidence {
            requester: who.clone(),
            item: Box::new(item.clone()),
        },
    };
    let bytes = codec::encode(&delivery).map_err(|e| e.to_string())?;
    // Milliseconds first: file names sort oldest first.
    let file = dir.join(format!("{:016}-{}{SUFFIX}", crate::now_ms(), item.key));
    write_atomic(&file, &bytes, 0o600).map_err(|e| e.to_string())?;
    let all = files(state);
    for old in all.iter().take(all.len().saturating_sub(MAX_KEPT)) {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

fn files(state: &StateDir) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir(state)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(SUFFIX))
        .collect();
    out.sort();
    out
}

fn read(file: &Path) -> Option<SignedItem> {
    let too_big = std::fs::metadata(file)
        .map(|m| m.len() > u64::from(<Delivery as codec::Message>::MAX_BYTES))
        .unwrap_or(true);
    if too_big {
        return None;
    }
    match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| codec::decode::<Delivery>(&b).map_err(|e| e.to_string()))
    {
        Ok(Delivery {
            notice: AgentNotice::Evidence { item, .. },
            ..
        }) => Some(*item),
        Ok(_) => None,
        Err(e) => {
            warn!(file = %file.display(), error = %e, "a kept self-fix record is unreadable; skipped");
            None
        }
    }
}

/// The kept runs, oldest first, newest `max` within `budget` bytes, with their files.
pub fn latest(state: &StateDir, max: usize, budget: usize) -> Vec<(PathBuf, SignedItem)> {
    let mut out = Vec::new();
    let mut used = 0usize;
    for file in files(state).into_iter().rev() {
        if out.len() >= max {
            break;
        }
        if let Some(item) = read(&file) {
            used += item.bytes.len() + item.signature.len();
            if used > budget {
                break;
            }
            out.push((file, item));
        }
    }
    out.reverse();
    out
}

/// Forgets runs that have left the machine (or wait in the spool with their request).
pub fn remove(files: &[PathBuf]) {
    for f in files {
        if let Err(e) = std::fs::remove_file(f) {
            warn!(file = %f.display(), error = %e, "a sent self-fix record was not removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use deskside_proto::evidence::EvidenceKind;
    use deskside_proto::msg::identity::Tier;

    use super::*;

    fn item(key: &str, size: usize) -> SignedItem {
        SignedItem {
            key: key.into(),
            kind: EvidenceKind::ScriptRun,
            bytes: vec![b'x'; size],
            signature: vec![1; 64],
            redaction: Vec::new(),
        }
    }

    #[test]
    fn runs_are_kept_bounded_and_read_back_newest_within_the_budget() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let state = StateDir::new(dir.path().to_owned());
        let who = Requester {
            technician: "alice (self-service)".into(),
            tier: Tier::L1,
            ticket: 0,
            request_key: String::new(),
        };
        for i in 0..MAX_KEPT + 3 {
            put(&state, &who, &item(&format!("k{i:02}"), 100)).map_err(anyhow::Error::msg)?;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(files(&state).len(), MAX_KEPT, "the oldest were dropped");
        let keys =
            |v: Vec<(PathBuf, SignedItem)>| v.into_iter().map(|(_, i)| i.key).collect::<Vec<_>>();
        let newest = format!("k{:02}", MAX_KEPT + 2);
        assert_eq!(
            keys(latest(&state, 2, usize::MAX)),
            vec![format!("k{:02}", MAX_KEPT + 1), newest.clone()]
        );
        assert_eq!(
            keys(latest(&state, 10, 200)),
            vec![newest],
            "one fits the budget"
        );
        let all = latest(&state, usize::MAX, usize::MAX);
        remove(&all.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>());
        assert!(files(&state).is_empty());
        Ok(())
    }
}
