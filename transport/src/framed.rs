//! Framed messages over QUIC streams: one request per bidirectional stream.
//!
//! The length prefix is checked against the expected kind's limit (see
//! `deskside_proto::frame`), and the payload buffer then grows with the bytes that
//! arrive, never to the announced length up front: a peer that announces 16 MiB on each
//! of its streams and sends a few bytes makes the reader hold those few bytes, not 16 MiB
//! a stream.

use std::time::Duration;

use deskside_proto::frame::{self, HEADER_LEN};
use deskside_proto::{Message, codec};
use quinn::{ReadExactError, RecvStream, SendStream};

use crate::TransportError;

/// Most a payload buffer holds before any of its bytes have arrived. Control frames (a
/// hello, a request, an acknowledgement) fit; anything larger grows as it arrives.
pub const FIRST_ALLOCATION: usize = 16 * 1024;

/// Writes one framed message.
pub async fn send<M: Message>(stream: &mut SendStream, msg: &M) -> Result<(), TransportError> {
    let bytes = frame::encode_frame(msg)?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))
}

/// Reads one framed message of kind `M`.
pub async fn recv<M: Message>(stream: &mut RecvStream) -> Result<M, TransportError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact::<M>(stream, &mut header).await?;
    let len = frame::payload_len::<M>(header)?;
    let payload = read_payload::<M>(stream, len).await?;
    Ok(codec::decode(&payload)?)
}

/// Reads exactly `len` payload bytes into a buffer that holds no more than what arrived
/// (at most twice that, and never more than `len`).
async fn read_payload<M: Message>(
    stream: &mut RecvStream,
    len: usize,
) -> Result<Vec<u8>, TransportError> {
    let mut payload = Vec::with_capacity(len.min(FIRST_ALLOCATION));
    while payload.len() < len {
        let want = len - payload.len();
        let chunk = read_chunk(stream, want)
            .await?
            .ok_or(TransportError::Truncated { kind: M::KIND })?;
        grow_for(&mut payload, chunk.len(), len);
        payload.extend_from_slice(&chunk);
    }
    Ok(payload)
}

/// Makes room for `more` bytes in `buf`: doubling, so a large payload costs few copies,
/// but never past `limit`, the announced length.
fn grow_for(buf: &mut Vec<u8>, more: usize, limit: usize) {
    let need = buf.len().saturating_add(more);
    if need > buf.capacity() {
        let target = buf
            .capacity()
            .saturating_mul(2)
            .clamp(need, limit.max(need));
        buf.reserve_exact(target - buf.len());
    }
}

/// Up to `max` bytes as they arrive, in order, without copying them; `None` once the
/// peer has finished the stream.
pub async fn read_chunk(
    stream: &mut RecvStream,
    max: usize,
) -> Result<Option<bytes::Bytes>, TransportError> {
    Ok(stream
        .read_chunk(max, true)
        .await
        .map_err(read_error)?
        .map(|c| c.bytes))
}

fn read_error(e: quinn::ReadError) -> TransportError {
    match e {
        quinn::ReadError::ConnectionLost(c) => TransportError::Connection(c),
        other => TransportError::Stream(other.to_string()),
    }
}

/// [`recv`] with a deadline: a peer that starts a message and never finishes it is
/// cut off instead of holding the stream forever.
pub async fn recv_within<M: Message>(
    stream: &mut RecvStream,
    limit: Duration,
) -> Result<M, TransportError> {
    tokio::time::timeout(limit, recv::<M>(stream))
        .await
        .map_err(|_| TransportError::Timeout { kind: M::KIND })?
}

async fn read_exact<M: Message>(
    stream: &mut RecvStream,
    buf: &mut [u8],
) -> Result<(), TransportError> {
    stream.read_exact(buf).await.map_err(|e| match e {
        ReadExactError::FinishedEarly(_) => TransportError::Truncated { kind: M::KIND },
        ReadExactError::ReadError(e) => read_error(e),
    })
}

/// Opens a stream, sends `req`, finishes the sending side and waits up to `limit` for
/// the reply.
pub async fn request<Req: Message, Rep: Message>(
    conn: &quinn::Connection,
    req: &Req,
    limit: Duration,
) -> Result<Rep, TransportError> {
    let (mut send_half, mut recv_half) = conn.open_bi().await?;
    send(&mut send_half, req).await?;
    // Finishing fails only if the stream was already reset, which the read reports.
    let _ = send_half.finish();
    recv_within::<Rep>(&mut recv_half, limit).await
}

/// Writes one framed message to any byte stream (the agent's local control socket).
pub async fn send_io<M: Message, W: tokio::io::AsyncWrite + Unpin>(
    out: &mut W,
    msg: &M,
) -> Result<(), TransportError> {
    use tokio::io::AsyncWriteExt;
    let bytes = frame::encode_frame(msg)?;
    out.write_all(&bytes).await?;
    out.flush().await?;
    Ok(())
}

/// Reads one framed message from any byte stream; `Ok(None)` on a clean end of stream
/// before a new frame.
pub async fn recv_io<M: Message, R: tokio::io::AsyncRead + Unpin>(
    input: &mut R,
) -> Result<Option<M>, TransportError> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = input
            .read(header.get_mut(got..).unwrap_or_default())
            .await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(TransportError::Truncated { kind: M::KIND })
            };
        }
        got += n;
    }
    let len = frame::payload_len::<M>(header)?;
    // As for QUIC streams: the buffer grows with what arrives, not with what was announced.
    let mut payload = Vec::with_capacity(len.min(FIRST_ALLOCATION));
    let want = u64::try_from(len).unwrap_or(u64::MAX);
    input.take(want).read_to_end(&mut payload).await?;
    if payload.len() < len {
        return Err(TransportError::Truncated { kind: M::KIND });
    }
    Ok(Some(codec::decode(&payload)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_follows_the_bytes_that_arrive_up_to_the_announced_length() {
        let announced = 16 * 1024 * 1024;
        let mut buf = Vec::with_capacity(FIRST_ALLOCATION);
        grow_for(&mut buf, 10, announced);
        buf.extend_from_slice(&[0; 10]);
        assert_eq!(buf.capacity(), FIRST_ALLOCATION);
        // A chunk past the capacity doubles it, not more.
        grow_for(&mut buf, FIRST_ALLOCATION, announced);
        assert_eq!(buf.capacity(), 2 * FIRST_ALLOCATION);
        // Near the end, the buffer stops at the announced length.
        let announced = 3 * FIRST_ALLOCATION;
        let mut buf = vec![0u8; 2 * FIRST_ALLOCATION];
        grow_for(&mut buf, 100, announced);
        assert_eq!(buf.capacity(), announced);
    }

    #[tokio::test]
    async fn a_payload_announced_large_but_never_sent_is_truncated_without_its_buffer() {
        let mut frame = (8u32 * 1024 * 1024).to_le_bytes().to_vec();
        frame.extend_from_slice(b"few");
        let mut input: &[u8] = &frame;
        let got = recv_io::<deskside_proto::msg::agent::AgentReply, _>(&mut input).await;
        assert!(
            matches!(got, Err(TransportError::Truncated { .. })),
            "{got:?}"
        );
    }
}
