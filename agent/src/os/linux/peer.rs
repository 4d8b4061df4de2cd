//! Who is at the other end of a local socket: the kernel's peer credentials (SO_PEERCRED).

use tokio::net::UnixStream;

/// The uid of the process that connected `stream`, as the kernel recorded it at connect.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    stream.peer_cred().map(|cred| cred.uid())
}
