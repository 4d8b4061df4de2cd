//! Every size limit the protocol enforces, in one place, with its reason.
//!
//! A frame's length prefix is checked against the limit of the message kind the reader
//! expects *before* any buffer is allocated, so a peer cannot make us reserve more.

/// Hello, version replies and small control messages: a few short strings.
pub const MAX_CONTROL_BYTES: u32 = 4 * 1024;

/// Enrollment: a CSR (~0.5 KiB PEM) or an issued certificate plus the CA (~2 KiB).
/// 16 KiB leaves room for longer chains without inviting abuse from unauthenticated peers.
pub const MAX_ENROLL_BYTES: u32 = 16 * 1024;

/// A request from a technician or the controller: identifiers and a title or note.
pub const MAX_REQUEST_BYTES: u32 = 64 * 1024;

/// A request from the controller to an agent: a signed script (body up to 256 KiB)
/// with its manifest and parameters is the largest.
pub const MAX_AGENT_REQUEST_BYTES: u32 = 512 * 1024;

/// A diagnostics snapshot of a large workstation (500 processes, 64 disks) is ~200 KiB.
/// 4 MiB leaves room without letting a peer make us allocate gigabytes.
pub const MAX_SNAPSHOT_BYTES: u32 = 4 * 1024 * 1024;

/// One evidence item from an agent as JSON: a script run keeps up to 1 MiB of each
/// output stream, and JSON escaping of binary output can triple it. 16 MiB covers the
/// worst case with room; a snapshot (≤ 4 MiB encoded) is far below.
pub const MAX_EVIDENCE_BYTES: u32 = 16 * 1024 * 1024;

/// Replies to technicians: a ticket with its timeline, or listings of agents/tickets.
/// 8 MiB carries a snapshot with findings plus its evidence reference.
pub const MAX_REPLY_BYTES: u32 = 8 * 1024 * 1024;

/// An enrollment token as text: ~120 characters with one controller address, ~400 with
/// eight typical ones; eight of the longest addresses ([`MAX_CONTROLLERS`] ×
/// [`MAX_CONTROLLER_ADDR_BYTES`]) fit in 4096. Anything longer is not ours.
pub const MAX_TOKEN_CHARS: usize = 4096;

/// Controller addresses one token or enrollment record carries: a cluster is a handful
/// of nodes; eight leaves room for a rolling replacement without tokens growing large.
pub const MAX_CONTROLLERS: usize = 8;

/// Longest `HOST:PORT` a token carries: a 253-byte DNS name, `:` and a port.
pub const MAX_CONTROLLER_ADDR_BYTES: usize = 260;

/// Longest ticket title, agent id or technician name we accept, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Memory one decode may claim for the collections and strings it builds. In-memory
/// structs are larger than their encoding, so this is a multiple of the largest frame.
pub const MAX_DECODE_MEMORY: usize = 64 * 1024 * 1024;

/// Bundle files travel to the technician in chunks of this size, so one reply stays far
/// below [`MAX_REPLY_BYTES`] whatever the evidence size.
pub const BUNDLE_CHUNK_BYTES: usize = 1024 * 1024;

/// Default limit on one file collected as evidence (`deskside collect`): large logs,
/// crash dumps and core files fit; a disk image does not. The controller's
/// `[evidence] max_file_bytes` changes it; the bytes stream to disk, never into memory.
pub const MAX_COLLECT_BYTES: u64 = 1024 * 1024 * 1024;
