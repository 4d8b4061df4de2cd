//! The archive's members: which names may appear and where each lands, the manifest
//! that lists them with their SHA-256, and streaming a file in or out while hashing it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    BackupError, DATABASE, EVIDENCE, KEY_FILES, MANIFEST, MAX_MANIFEST_BYTES, OPTIONAL_KEY_FILES,
    io_err,
};
use crate::evidence::DirBlobs;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    pub(super) format: String,
    pub(super) version: u32,
    pub(super) created_at_secs: u64,
    pub(super) deskside_version: String,
    pub(super) files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManifestFile {
    pub(super) path: String,
    pub(super) size: u64,
    pub(super) sha256: String,
}

/// A reader that hashes and counts what passes through it.
pub(super) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    pub(super) fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub(super) fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.bytes = self.bytes.saturating_add(n as u64);
        Ok(n)
    }
}

/// `evidence/<aa>/<sha256>`: the blob's place in the archive mirrors [`DirBlobs`].
pub(super) fn blob_member(sha256: &str) -> Option<String> {
    let relative = DirBlobs::relative_path(sha256).ok()?;
    Some(format!("{EVIDENCE}/{relative}"))
}

pub(super) fn member_header(size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Streams one file into the archive, hashing it on the way.
pub(super) fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    member: &str,
    mode: u32,
) -> Result<ManifestFile, BackupError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(io_err(format!("opening {shown}")))?;
    let meta = file
        .metadata()
        .map_err(io_err(format!("reading {shown}")))?;
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut header = member_header(size, mode, mtime);
    let mut reader = Hashing::new(BufReader::new(file).take(size));
    builder
        .append_data(&mut header, member, &mut reader)
        .map_err(io_err(format!("archiving {shown}")))?;
    let (sha256, read) = reader.finish();
    if read != size {
        return Err(BackupError::Io {
            what: format!("archiving {shown}"),
            source: io::Error::other(format!(
                "it shrank from {size} to {read} bytes while being copied"
            )),
        });
    }
    Ok(ManifestFile {
        path: member.to_owned(),
        size,
        sha256,
    })
}

/// Member name → (sha256, size) of what was written.
pub(super) type Extracted = BTreeMap<String, (String, u64)>;

/// What a member may be.
enum Member<'m> {
    Database,
    /// A key or certificate, with the mode it is restored with.
    Key(u32),
    /// An evidence blob, by its SHA-256.
    Blob(&'m str),
}

impl Member<'_> {
    fn of(member: &str) -> Option<Member<'_>> {
        if member == DATABASE {
            return Some(Member::Database);
        }
        if let Some((_, mode)) = KEY_FILES
            .iter()
            .chain(&OPTIONAL_KEY_FILES)
            .find(|(name, _)| *name == member)
        {
            return Some(Member::Key(*mode));
        }
        let sha256 = member.rsplit('/').next()?;
        (blob_member(sha256).as_deref() == Some(member)).then_some(Member::Blob(sha256))
    }

    /// The mode the member is restored with.
    fn mode(&self) -> u32 {
        match self {
            Member::Key(mode) => *mode,
            Member::Database | Member::Blob(_) => 0o600,
        }
    }
}

/// The member's path as `a/b/c`, refusing absolute paths and `..` anywhere.
fn member_name(path: &Path) -> Result<String, BackupError> {
    let shown = path.display().to_string();
    let unsafe_path = || BackupError::UnsafePath {
        member: shown.clone(),
    };
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(unsafe_path)?),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(unsafe_path());
            }
        }
    }
    if parts.is_empty() {
        return Err(unsafe_path());
    }
    Ok(parts.join("/"))
}

/// Writes every member into `staged` (never outside it: paths are checked first and only
/// known names are accepted), hashing each; returns them and the manifest's bytes.
pub(super) fn extract(
    archive: &Path,
    staged: &Path,
) -> Result<(Extracted, Option<Vec<u8>>), BackupError> {
    let shown = archive.display().to_string();
    let file = File::open(archive).map_err(io_err(format!("opening {shown}")))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    let blobs = DirBlobs::new(staged.join(EVIDENCE));
    let mut extracted = Extracted::new();
    let mut manifest = None;
    let entries = tar.entries().map_err(io_err(format!("reading {shown}")))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err(format!("reading {shown}")))?;
        let raw = entry
            .path()
            .map_err(io_err(format!("reading a member name in {shown}")))?
            .into_owned();
        let member = member_name(&raw)?;
        let unexpected = |reason: &str| BackupError::UnexpectedMember {
            member: member.clone(),
            reason: reason.to_owned(),
        };
        if !entry.header().entry_type().is_file() {
            return Err(unexpected("is not a regular file"));
        }
        if member == MANIFEST {
            if manifest.is_some() {
                return Err(unexpected("appears twice"));
            }
            if entry.size() > MAX_MANIFEST_BYTES {
                return Err(unexpected("is too large to be a manifest"));
            }
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(io_err(format!("reading {MANIFEST} from {shown}")))?;
            manifest = Some(bytes);
            continue;
        }
        let not_ours = || unexpected("is not part of a Deskside backup");
        let kind = Member::of(&member).ok_or_else(not_ours)?;
        let mode = kind.mode();
        let dest = match kind {
            Member::Blob(sha256) => blobs.path_of(sha256).map_err(|_| not_ours())?,
            Member::Database | Member::Key(_) => staged.join(&member),
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let mut out = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&dest)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(unexpected("appears twice"));
            }
            Err(e) => return Err(io_err(format!("creating {}", dest.display()))(e)),
        };
        let mut reader = Hashing::new(&mut entry);
        io::copy(&mut reader, &mut out)
            .map_err(io_err(format!("extracting {member} from {shown}")))?;
        out.sync_all()
            .map_err(io_err(format!("syncing {}", dest.display())))?;
        extracted.insert(member, reader.finish());
    }
    Ok((extracted, manifest))
}
