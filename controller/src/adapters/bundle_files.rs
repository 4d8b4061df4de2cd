//! Reading an evidence bundle directory for upload: the report, the machine-readable
//! `evidence.json`, and every item file, byte-exact.

use std::fs;
use std::path::{Path, PathBuf};

use super::AdapterError;
use crate::bundle::{Bundle, EVIDENCE_JSON, ITEMS_DIR, REPORT_HTML, REPORT_MD};

/// Largest bundle pushed to an external system. A ticket holds a handful of snapshots
/// (4 MiB each at most) and script runs; 64 MiB leaves room for that while refusing to
/// load a runaway directory into memory. Help desks cap attachments lower anyway.
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;

/// One file to attach.
#[derive(Debug, Clone)]
pub struct BundleFile {
    /// The name it goes by outside: the item's SHA-256, `evidence.json`, `report.html`.
    pub filename: String,
    pub data: Vec<u8>,
}

/// A bundle as read from disk.
#[derive(Debug, Clone)]
pub struct BundleFiles {
    pub report_md: String,
    /// Every file under `items/` (sorted by name), then `evidence.json`, `report.html`.
    pub attachments: Vec<BundleFile>,
    /// `evidence.json` parsed.
    pub evidence: Bundle,
}

impl BundleFiles {
    pub fn read(dir: &Path) -> Result<BundleFiles, AdapterError> {
        let mut budget = MAX_BUNDLE_BYTES;
        let report_md = read_file(&dir.join(REPORT_MD), &mut budget)?;
        let report_md = String::from_utf8(report_md).map_err(|e| AdapterError::Bundle {
            path: dir.join(REPORT_MD),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        })?;

        let items_dir = dir.join(ITEMS_DIR);
        let mut names = Vec::new();
        for entry in fs::read_dir(&items_dir).map_err(bundle_err(&items_dir))? {
            let entry = entry.map_err(bundle_err(&items_dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(bundle_err(&path))?;
            if !kind.is_file() {
                return Err(AdapterError::Bundle {
                    path,
                    source: std::io::Error::other(
                        "not a regular file; a bundle's items/ holds only item files",
                    ),
                });
            }
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| AdapterError::Bundle {
                    path: path.clone(),
                    source: std::io::Error::other(
                        "file name is not UTF-8; item files are named by their SHA-256",
                    ),
                })?;
            names.push(name);
        }
        names.sort();

        let mut attachments = Vec::with_capacity(names.len() + 2);
        for name in names {
            let data = read_file(&items_dir.join(&name), &mut budget)?;
            attachments.push(BundleFile {
                filename: name,
                data,
            });
        }
        let evidence_path = dir.join(EVIDENCE_JSON);
        let evidence_bytes = read_file(&evidence_path, &mut budget)?;
        let evidence: Bundle =
            serde_json::from_slice(&evidence_bytes).map_err(|e| AdapterError::Bundle {
                path: evidence_path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        attachments.push(BundleFile {
            filename: EVIDENCE_JSON.to_owned(),
            data: evidence_bytes,
        });
        let html = read_file(&dir.join(REPORT_HTML), &mut budget)?;
        attachments.push(BundleFile {
            filename: REPORT_HTML.to_owned(),
            data: html,
        });
        Ok(BundleFiles {
            report_md,
            attachments,
            evidence,
        })
    }
}

fn bundle_err(path: &Path) -> impl Fn(std::io::Error) -> AdapterError + '_ {
    move |source| AdapterError::Bundle {
        path: path.to_owned(),
        source,
    }
}

/// Reads a file, charging its size to `budget`.
fn read_file(path: &Path, budget: &mut u64) -> Result<Vec<u8>, AdapterError> {
    let too_big = |path: PathBuf| AdapterError::Bundle {
        path,
        source: std::io::Error::other(format!(
            "the bundle is larger than {MAX_BUNDLE_BYTES} bytes; too large to push to a ticket system"
        )),
    };
    let len = fs::metadata(path).map_err(bundle_err(path))?.len();
    if len > *budget {
        return Err(too_big(path.to_owned()));
    }
    let data = fs::read(path).map_err(bundle_err(path))?;
    let read = u64::try_from(data.len()).unwrap_or(u64::MAX);
    *budget = budget
        .checked_sub(read)
        .ok_or_else(|| too_big(path.to_owned()))?;
    Ok(data)
}
