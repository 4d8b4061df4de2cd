//! Reading a script's stdout or stderr: streamed as events up to the cap, counted past
//! it, and always read to the end so the script never blocks on a full pipe.

use std::io;

use deskside_proto::msg::script::{MAX_OUTPUT_BYTES, OutputStream, RunEvent};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Largest read from a script's stdout or stderr, and so the largest `Output` event.
pub(super) const CHUNK_BYTES: usize = 16 * 1024;

/// What one output stream produced.
#[derive(Debug, Default)]
pub(super) struct Capture {
    /// Everything the script wrote.
    pub(super) total: u64,
    /// What was kept (sent as events, or would have been had the receiver stayed).
    kept: usize,
    pub(super) truncated: bool,
}

/// Reads `reader` to the end in chunks, sending the first [`MAX_OUTPUT_BYTES`] on
/// `events` and only counting the rest, so the script never blocks on a full pipe.
pub(super) async fn pump(
    mut reader: impl AsyncRead + Unpin,
    stream: OutputStream,
    events: &mpsc::Sender<RunEvent>,
    capture: &mut Capture,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut receiver_gone = false;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading the script's {stream:?}: {e}");
                return;
            }
        };
        capture.total = capture.total.saturating_add(n as u64);
        let keep = n.min(MAX_OUTPUT_BYTES.saturating_sub(capture.kept));
        capture.kept += keep;
        if keep < n {
            capture.truncated = true;
        }
        if keep == 0 || receiver_gone {
            continue;
        }
        let data = buf.get(..keep).unwrap_or_default().to_vec();
        if events
            .send(RunEvent::Output { stream, data })
            .await
            .is_err()
        {
            receiver_gone = true;
        }
    }
}
