//! The script's body as a private file (mode 0700, a fresh random name) in the work
//! directory, removed when the run ends however it ends.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::RunError;

/// Attempts at a fresh script file name before giving up (a clash is already unlikely).
const NAME_ATTEMPTS: u32 = 8;

/// The body written for one run; removed when dropped.
#[derive(Debug)]
pub(super) struct ScriptFile {
    pub(super) path: PathBuf,
}

impl ScriptFile {
    pub(super) async fn create(dir: &Path, body: &str) -> Result<Self, RunError> {
        let failed = |source| RunError::CreateScript {
            dir: dir.to_owned(),
            source,
        };
        let mut attempt = 0;
        let (script, mut file) = loop {
            let path = dir.join(format!("deskside-script-{:016x}", rand::random::<u64>()));
            let opened = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o700)
                .open(&path)
                .await;
            match opened {
                Ok(file) => break (ScriptFile { path }, file),
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < NAME_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(failed(e)),
            }
        };
        // `script` now owns the file: a failed write below still removes it.
        file.write_all(body.as_bytes()).await.map_err(failed)?;
        file.flush().await.map_err(failed)?;
        Ok(script)
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove script file {}: {e}", self.path.display());
        }
    }
}
