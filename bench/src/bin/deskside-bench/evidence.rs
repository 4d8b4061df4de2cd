//! Shared evidence blobs, directory against PostgreSQL: a large collect and a
//! diagnostics snapshot written and read back through the controller's own blob stores
//! (`DirBlobs`, the `[evidence] dir` a cluster shares; `PgBlobs` in a throwaway
//! PostgreSQL cluster with its default durability), and what each grows by.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use deskside_controller::evidence::{BlobStore, DirBlobs};
use deskside_controller::store::blobs::{PgBlobs, PgUsage};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::pgcluster::PgCluster;
use crate::report::Row;
use crate::stats::{Samples, mib, ratio, size};

/// Pieces a collect hands its blob writer: what a QUIC stream yields at a time.
const PIECE_BYTES: usize = 64 * 1024;
/// Bytes read back at a time.
const READ_BYTES: usize = 1024 * 1024;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct EvidencePlan {
    /// The large collect's size.
    pub bulk_bytes: u64,
    /// Large collects written and read back per store.
    pub bulk_runs: usize,
    /// Snapshots written and read back per store.
    pub snapshots: usize,
}

/// One store's figures.
#[derive(Debug)]
struct Measured {
    bulk_write: Samples,
    bulk_read: Samples,
    snap_write: Samples,
    snap_read: Samples,
    /// Bytes the store grew by for everything written.
    grew: u64,
    /// PostgreSQL only: WAL written for everything written.
    wal: Option<u64>,
}

/// The rows and the setup lines (choice included) of the evidence measure.
pub async fn measure(plan: EvidencePlan) -> Result<(Vec<Row>, Vec<String>)> {
    // A real snapshot of this machine, as an agent takes it, in the JSON it is kept in.
    let snapshot = serde_json::to_vec(&deskside_agent::diag::snapshot().await)?;
    tokio::task::spawn_blocking(move || measure_blocking(plan, &snapshot))
        .await
        .context("the evidence measure stopped")?
}

fn measure_blocking(plan: EvidencePlan, snapshot: &[u8]) -> Result<(Vec<Row>, Vec<String>)> {
    let bulk_len = usize::try_from(plan.bulk_bytes).context("--mib too large")?;
    let mut bulk = vec![0u8; bulk_len];
    rand::thread_rng().fill_bytes(&mut bulk);

    let scratch = tempfile::Builder::new()
        .prefix("deskside-evidence-")
        .tempdir_in("/tmp")?;
    let dir = DirBlobs::new(scratch.path().join("evidence"));
    let on_dir = run_store(&dir, plan, &mut bulk, snapshot, &|| {
        Ok((du(&scratch.path().join("evidence"))?, None))
    })?;

    let cluster = PgCluster::start()?;
    let pg = PgBlobs::new(&cluster.url())?;
    pg.prepare()?;
    let before = pg.usage()?;
    let usage = || -> Result<(u64, Option<u64>)> {
        let now: PgUsage = pg.usage()?;
        Ok((
            now.database_bytes.saturating_sub(before.database_bytes),
            Some(now.wal_position.saturating_sub(before.wal_position)),
        ))
    };
    let on_pg = run_store(&pg, plan, &mut bulk, snapshot, &usage)?;
    drop(cluster);
    Ok(rows(plan, snapshot.len(), &on_dir, &on_pg))
}

/// Writes and reads back `plan.bulk_runs` large blobs and `plan.snapshots` snapshots,
/// each distinct, checking every digest; `grown` says what the store grew by.
fn run_store(
    store: &dyn BlobStore,
    plan: EvidencePlan,
    bulk: &mut [u8],
    snapshot: &[u8],
    grown: &dyn Fn() -> Result<(u64, Option<u64>)>,
) -> Result<Measured> {
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for run in 0..plan.bulk_runs {
        // A different blob each run, so none is skipped as already stored.
        if let Some(head) = bulk.get_mut(..8) {
            head.copy_from_slice(&(run as u64).to_le_bytes());
        }
        let start = Instant::now();
        let mut w = store.begin()?;
        for piece in bulk.chunks(PIECE_BYTES) {
            w.write(piece)?;
        }
        let sha = w.commit()?;
        writes.push(start.elapsed());
        let start = Instant::now();
        let (len, read_sha) = read_back(store, &sha)?;
        reads.push(start.elapsed());
        if len != bulk.len() as u64 || read_sha != sha {
            bail!(
                "{} gave back {len} bytes with SHA-256 {read_sha} for {sha}",
                store.location(&sha)
            );
        }
    }
    let mut snap_writes = Vec::new();
    let mut snap_reads = Vec::new();
    let mut names = Vec::new();
    for n in 0..plan.snapshots {
        let mut bytes = snapshot.to_vec();
        bytes.extend_from_slice(format!(" {n}").as_bytes());
        let start = Instant::now();
        names.push(store.put(&bytes)?);
        snap_writes.push(start.elapsed());
    }
    for sha in &names {
        let start = Instant::now();
        let (_, read_sha) = read_back(store, sha)?;
        snap_reads.push(start.elapsed());
        if &read_sha != sha {
            bail!("{} gave back the wrong bytes", store.location(sha));
        }
    }
    let (grew, wal) = grown()?;
    Ok(Measured {
        bulk_write: Samples::new(writes)?,
        bulk_read: Samples::new(reads)?,
        snap_write: Samples::new(snap_writes)?,
        snap_read: Samples::new(snap_reads)?,
        grew,
        wal,
    })
}

/// Reads a blob back in pieces: its length and SHA-256.
fn read_back(store: &dyn BlobStore, sha: &str) -> Result<(u64, String)> {
    let mut from = store.open(sha)?;
    let mut buf = vec![0u8; READ_BYTES];
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        len += n as u64;
    }
    Ok((len, hex::encode(hasher.finalize())))
}

/// Bytes of the files under `dir` (blocks allocated).
fn du(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            du(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

/// MiB/s for `bytes` in `d`.
fn rate(bytes: u64, d: Duration) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64().max(1e-9);
    format!("{v:.0} MiB/s")
}

fn rows(
    plan: EvidencePlan,
    snap_len: usize,
    dir: &Measured,
    pg: &Measured,
) -> (Vec<Row>, Vec<String>) {
    let big = size(plan.bulk_bytes);
    let snap = size(snap_len as u64);
    let timed = |s: &Samples, bytes: u64| format!("{} ({} at p50)", s.show(), rate(bytes, s.p50()));
    let pair = |measure: String, d: &Samples, p: &Samples, bytes: u64, how: &str| {
        Row::new(&measure, format!("directory: {}", timed(d, bytes)), "—")
            .baseline(format!("PostgreSQL: {}", timed(p, bytes)))
            .ratio(format!(
                "PostgreSQL {} the directory's time",
                ratio(p.p50(), d.p50())
            ))
            .how(how.to_owned())
    };
    let stored = plan.bulk_bytes * plan.bulk_runs as u64 + (snap_len * plan.snapshots) as u64;
    let how_bulk = format!(
        "through the controller's own blob stores, as a collect uses them: `begin`, the bytes \
         in {} KiB pieces (what a QUIC stream yields), `commit` (the directory: staged, \
         written with O_DIRECT, fsync, rename, directory fsync; PostgreSQL: 1 MiB BYTEA rows \
         in one transaction, committed with synchronous_commit on); read back with `open` in \
         1 MiB reads and its SHA-256 checked. Random bytes, a different blob each run; both \
         stores on the same disk (/tmp). PostgreSQL 15, a throwaway cluster with its default \
         settings (fsync on, shared_buffers 128 MB) on 127.0.0.1, over TCP",
        PIECE_BYTES / 1024
    );
    let how_snap = format!(
        "a real diagnostics snapshot of this machine ({snap} of JSON, as the agent takes it), \
         made distinct each time, stored with `put` (one blob, durable before it returns) \
         then each read back with `open` and checked; {} each",
        plan.snapshots
    );
    let mut rows = vec![
        pair(
            format!("evidence blobs: write a {big} collect"),
            &dir.bulk_write,
            &pg.bulk_write,
            plan.bulk_bytes,
            &how_bulk,
        ),
        pair(
            format!("evidence blobs: read back a {big} collect"),
            &dir.bulk_read,
            &pg.bulk_read,
            plan.bulk_bytes,
            &how_bulk,
        ),
        pair(
            format!("evidence blobs: write a snapshot ({snap})"),
            &dir.snap_write,
            &pg.snap_write,
            snap_len as u64,
            &how_snap,
        ),
        pair(
            format!("evidence blobs: read back a snapshot ({snap})"),
            &dir.snap_read,
            &pg.snap_read,
            snap_len as u64,
            &how_snap,
        ),
    ];
    let wal = pg.wal.unwrap_or(0);
    rows.push(
        Row::new(
            "evidence blobs: storage grown",
            format!("directory: {} on disk", mib(dir.grew)),
            "—",
        )
        .baseline(format!(
            "PostgreSQL: database +{}, and {} of WAL written",
            mib(pg.grew),
            mib(wal)
        ))
        .ratio(format!(
            "{:.2}× the bytes stored in the database, {:.2}× written to WAL",
            pg.grew as f64 / stored.max(1) as f64,
            wal as f64 / stored.max(1) as f64
        ))
        .how(format!(
            "after everything above ({} stored: {} × {big} and {} snapshots): the blocks of \
             the directory's files; `pg_database_size` and the WAL position \
             (`pg_current_wal_lsn`) before and after, so both tables, their TOAST and indexes",
            mib(stored),
            plan.bulk_runs,
            plan.snapshots
        )),
    );
    let choice = if dir.bulk_write.p50() <= pg.bulk_write.p50() {
        format!(
            "**Choice:** the shared directory (`[evidence] dir`). In this run PostgreSQL took \
             {} the directory's time to store a {big} collect; a snapshot took {} in the \
             directory and {} in PostgreSQL ({}), small either way next to the request that \
             produced it. PostgreSQL wrote every byte twice (WAL {:.2}× the bytes stored, then \
             the table) and its database grew by the whole blob, which `pg_dump` would then \
             carry in every backup, while the directory writes each blob once and is copied \
             incrementally. PostgreSQL keeps the rows; the directory keeps the bytes, named by \
             their SHA-256",
            ratio(pg.bulk_write.p50(), dir.bulk_write.p50()),
            crate::stats::ms(dir.snap_write.p50()),
            crate::stats::ms(pg.snap_write.p50()),
            ratio(pg.snap_write.p50(), dir.snap_write.p50()),
            wal as f64 / stored.max(1) as f64
        )
    } else {
        "**Choice:** not settled by this run: PostgreSQL stored the large collect faster \
         than the directory; see the rows"
            .to_owned()
    };
    (rows, vec![choice])
}
