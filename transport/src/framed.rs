//! Framed messages over QUIC streams: one request per bidirectional stream.
//!
//! The length prefix is checked against the expected kind's limit before the payload
//! buffer is allocated (see `deskside_proto::frame`).

use std::time::Duration;

use deskside_proto::frame::{self, HEADER_LEN};
use deskside_proto::{Message, codec};
use quinn::{ReadExactError, RecvStream, SendStream};

use crate::TransportError;

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
    let mut payload = vec![0u8; len];
    read_exact::<M>(stream, &mut payload).await?;
    Ok(codec::decode(&payload)?)
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
        ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => {
            TransportError::Connection(c)
        }
        ReadExactError::ReadError(other) => TransportError::Stream(other.to_string()),
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
    let mut payload = vec![0u8; len];
    input
        .read_exact(&mut payload)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => TransportError::Truncated { kind: M::KIND },
            _ => TransportError::Io(e),
        })?;
    Ok(Some(codec::decode(&payload)?))
}
