//! Backup and restore against real data directories, and archives that lie.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use deskside_proto::msg::identity::Tier;
use sha2::{Digest, Sha256};

use super::archive::blob_member;
use super::{BackupError, backup, restore};
use crate::datadir::DataDir;
use crate::evidence::{BlobStore, DirBlobs};
use crate::store::{GENESIS_HASH, NewEvent, NewEvidence, NewTicket, Store, entry_hash};

struct Fixture {
    tmp: tempfile::TempDir,
    data: DataDir,
    store: Store,
    tickets: Vec<u64>,
}

fn ticket(store: &Store, title: &str) -> anyhow::Result<u64> {
    Ok(store.blocking(|db| {
        db.create_ticket(&NewTicket {
            title,
            requester: "pat",
            priority: "high",
            agent: None,
            by: "alice",
            tier: Tier::L1,
        })
    })?)
}

fn add_evidence(store: &Store, number: u64, sha256: &str, size: u64) -> anyhow::Result<()> {
    store.blocking(|db| {
        db.add_evidence(
            number,
            &NewEvidence {
                sha256: sha256.to_owned(),
                kind: deskside_proto::evidence::EvidenceKind::Snapshot,
                size_bytes: size,
                agent_id: None,
                signature: None,
                redaction: vec![],
            },
            &NewEvent {
                actor: "alice",
                kind: "snapshot",
                detail: "diagnostics",
                evidence_sha256: Some(sha256),
            },
        )
    })?;
    Ok(())
}

/// A data directory with two tickets and three evidence items, the store left open.
fn fixture() -> anyhow::Result<Fixture> {
    let tmp = tempfile::tempdir()?;
    let data = DataDir::new(tmp.path().join("data"));
    data.init()?;
    let store = Store::open(&data.database())?;
    let blobs = DirBlobs::new(data.evidence());
    let a = ticket(&store, "printer")?;
    let b = ticket(&store, "vpn")?;
    for (n, bytes) in [
        (a, &b"snapshot one"[..]),
        (a, b"log excerpt"),
        (b, b"snapshot two"),
    ] {
        let sha = blobs.put(bytes)?;
        add_evidence(&store, n, &sha, bytes.len() as u64)?;
    }
    Ok(Fixture {
        tmp,
        data,
        store,
        tickets: vec![a, b],
    })
}

type Rows = (
    Vec<deskside_proto::msg::tech::TicketSummary>,
    Vec<Vec<deskside_proto::msg::tech::TimelineEntry>>,
    Vec<Vec<deskside_proto::msg::tech::EvidenceRef>>,
);

fn rows(store: &Store, tickets: &[u64]) -> anyhow::Result<Rows> {
    Ok(store.blocking(|db| {
        let mut timelines = Vec::new();
        let mut evidence = Vec::new();
        for n in tickets {
            timelines.push(db.timeline(*n)?);
            evidence.push(db.evidence(*n)?);
        }
        Ok((db.tickets()?, timelines, evidence))
    })?)
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

#[test]
fn backup_then_restore_into_a_new_dir_gives_the_same_rows_and_verified_evidence()
-> anyhow::Result<()> {
    let f = fixture()?;
    let out = f.tmp.path().join("backup.tar");
    // The store stays open: this is an online backup.
    let summary = backup(&f.data, &out)?;
    assert_eq!(summary.evidence_blobs, 3);
    assert_eq!(
        summary.files, 11,
        "db + 7 keys and certificates (record signing included) + 3 blobs"
    );
    assert_eq!(mode(&out)?, 0o600);
    assert!(summary.to_string().contains("CA private key"), "{summary}");
    let leftovers: Vec<_> = fs::read_dir(f.tmp.path())?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let restored = DataDir::new(f.tmp.path().join("restored"));
    let r = restore(&out, &restored)?;
    assert_eq!(r.files, 11);
    assert_eq!(r.evidence_records, 3);
    assert!(r.to_string().contains("every hash verified"), "{r}");
    assert_eq!(mode(restored.root())?, 0o700);
    assert_eq!(mode(&restored.root().join("ca.key"))?, 0o600);

    let again = Store::open(&restored.database())?;
    let original = rows(&f.store, &f.tickets)?;
    assert_eq!(rows(&again, &f.tickets)?, original);
    let blobs = DirBlobs::new(restored.evidence());
    let mut verified = 0;
    for item in original.2.iter().flatten() {
        let bytes = blobs.get(&item.sha256)?;
        assert_eq!(hex::encode(Sha256::digest(&bytes)), item.sha256);
        verified += 1;
    }
    assert_eq!(verified, 3);
    // The keys load, so the restored controller serves its enrolled agents.
    assert_eq!(restored.load()?.ca_sha256, f.data.load()?.ca_sha256);
    // The same record-signing key: session records signed before the backup still
    // verify in bundles the restored controller exports.
    assert!(restored.root().join("record-signing.key").is_file());
    assert_eq!(
        restored.record_signing(&restored.load()?.ca)?.cert_pem,
        f.data.record_signing(&f.data.load()?.ca)?.cert_pem
    );
    Ok(())
}

#[test]
fn backup_of_a_closed_database_works_too() -> anyhow::Result<()> {
    let f = fixture()?;
    let Fixture {
        tmp, data, store, ..
    } = f;
    drop(store);
    let out = tmp.path().join("closed.tar");
    backup(&data, &out)?;
    restore(&out, &DataDir::new(tmp.path().join("r")))?;
    Ok(())
}

#[test]
fn backup_is_consistent_while_the_controller_writes() -> anyhow::Result<()> {
    let f = fixture()?;
    let n = f.tickets.first().copied().unwrap_or(1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (f.store.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<u32> {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.blocking(|db| {
                    db.add_event(
                        n,
                        &NewEvent {
                            actor: "bob",
                            kind: "note",
                            detail: "still working on it",
                            evidence_sha256: None,
                        },
                    )
                })?;
                written += 1;
            }
            Ok(written)
        })
    };
    let out = f.tmp.path().join("busy.tar");
    let result = backup(&f.data, &out);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    result?;
    assert!(written > 0);
    let restored = DataDir::new(f.tmp.path().join("restored"));
    restore(&out, &restored)?;
    let timeline = Store::open(&restored.database())?.blocking(|db| db.timeline(n))?;
    let mut prev = GENESIS_HASH.to_owned();
    for e in &timeline {
        assert_eq!(e.prev_hash, prev);
        assert_eq!(entry_hash(n, e), e.hash);
        prev = e.hash.clone();
    }
    Ok(())
}

/// Copies `src` to `dst`, passing each member's bytes through `edit`.
fn rewrite(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) -> anyhow::Result<()> {
    let mut ar = tar::Archive::new(File::open(src)?);
    let mut out = tar::Builder::new(File::create(dst)?);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        let bytes = edit(&name, bytes);
        let mut header = entry.header().clone();
        header.set_size(bytes.len() as u64);
        out.append_data(&mut header, &name, bytes.as_slice())?;
    }
    out.into_inner()?.sync_all()?;
    Ok(())
}

fn is_empty_or_absent(dir: &Path) -> bool {
    fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn a_tampered_member_is_refused_by_name() -> anyhow::Result<()> {
    let f = fixture()?;
    let out = f.tmp.path().join("backup.tar");
    backup(&f.data, &out)?;
    let sha = DirBlobs::new(f.data.evidence()).put(b"log excerpt")?;
    let victim = blob_member(&sha).unwrap_or_default();
    let tampered = f.tmp.path().join("tampered.tar");
    rewrite(&out, &tampered, |name, mut bytes| {
        if name == victim {
            bytes.iter_mut().for_each(|b| *b = b.to_ascii_uppercase());
        }
        bytes
    })?;
    let into = DataDir::new(f.tmp.path().join("restored"));
    let err = match restore(&tampered, &into) {
        Ok(s) => anyhow::bail!("restored a tampered archive: {s}"),
        Err(e) => e,
    };
    assert!(matches!(err, BackupError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains(&victim), "{err}");
    assert!(is_empty_or_absent(into.root()));

    // A key swapped for another is caught the same way.
    rewrite(&out, &tampered, |name, bytes| {
        if name == "ca.key" {
            b"-----BEGIN PRIVATE KEY-----\n".to_vec()
        } else {
            bytes
        }
    })?;
    let err = restore(&tampered, &into)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("archive member ca.key does not match the manifest"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_record_without_its_blob_is_named() -> anyhow::Result<()> {
    let f = fixture()?;
    let n = f.tickets.get(1).copied().unwrap_or(2);
    let missing = hex::encode(Sha256::digest(b"never stored"));
    add_evidence(&f.store, n, &missing, 12)?;
    let out = f.tmp.path().join("backup.tar");
    backup(&f.data, &out)?;
    let into = DataDir::new(f.tmp.path().join("restored"));
    let err = restore(&out, &into)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(&format!(
            "evidence {missing} of ticket {n}: its blob is not in the backup"
        )),
        "{err}"
    );
    assert!(is_empty_or_absent(into.root()));
    Ok(())
}

#[test]
fn restore_into_a_non_empty_dir_is_refused() -> anyhow::Result<()> {
    let f = fixture()?;
    let out = f.tmp.path().join("backup.tar");
    backup(&f.data, &out)?;
    let err = restore(&out, &f.data)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("refusing to restore into"), "{err}");
    assert!(err.contains("not empty"), "{err}");
    let other = f.tmp.path().join("other");
    fs::create_dir(&other)?;
    fs::write(other.join("keep.txt"), "mine")?;
    let err = restore(&out, &DataDir::new(&other))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("found keep.txt"), "{err}");
    assert_eq!(fs::read_to_string(other.join("keep.txt"))?, "mine");
    // An existing empty directory (e.g. made by systemd) is fine.
    let empty = f.tmp.path().join("empty");
    fs::create_dir(&empty)?;
    restore(&out, &DataDir::new(&empty))?;
    Ok(())
}

/// An archive whose one member has exactly `name`, bypassing the tar crate's checks.
fn crafted(path: &Path, name: &[u8]) -> anyhow::Result<()> {
    let mut header = tar::Header::new_old();
    for (d, s) in header.as_old_mut().name.iter_mut().zip(name) {
        *d = *s;
    }
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    let mut b = tar::Builder::new(File::create(path)?);
    b.append(&header, &b"evil\n"[..])?;
    b.into_inner()?.sync_all()?;
    Ok(())
}

#[test]
fn members_outside_the_target_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let into = DataDir::new(tmp.path().join("a").join("target"));
    let escape = tmp.path().join("a").join("evil");
    let absolute = tmp.path().join("absolute-evil");
    let cases = [
        b"../evil".to_vec(),
        absolute.to_string_lossy().as_bytes().to_vec(),
        b"evidence/../../evil".to_vec(),
    ];
    for name in cases {
        let archive = tmp.path().join("crafted.tar");
        crafted(&archive, &name)?;
        let err = match restore(&archive, &into) {
            Ok(s) => anyhow::bail!("restored {name:?}: {s}"),
            Err(e) => e,
        };
        assert!(matches!(err, BackupError::UnsafePath { .. }), "{err}");
        assert!(
            err.to_string().contains(&*String::from_utf8_lossy(&name)),
            "{err}"
        );
        assert!(!escape.exists() && !absolute.exists());
        assert!(is_empty_or_absent(into.root()));
    }
    // Unknown names and non-files are refused too.
    let archive = tmp.path().join("crafted.tar");
    crafted(&archive, b"etc/cron.d/x")?;
    let err = restore(&archive, &into)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("is not part of a Deskside backup"), "{err}");
    Ok(())
}

#[test]
fn backup_of_something_else_says_what_is_missing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let err = backup(&DataDir::new(tmp.path()), &tmp.path().join("x.tar"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("not a Deskside data directory (no ca.crt)"),
        "{err}"
    );
    assert!(!tmp.path().join("x.tar").exists());
    Ok(())
}
