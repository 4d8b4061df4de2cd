//! The controller's data directory: CA, server certificate, script-signing key,
//! database and evidence. `init` makes it once; everything else opens it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};

use crate::ca::{self, Ca, CaError, CertAndKey};

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
const SCRIPT_KEY: &str = "script-signing.key";
const RECORD_KEY: &str = "record-signing.key";
const RECORD_CERT: &str = "record-signing.crt";
const DATABASE: &str = "deskside.db";
const EVIDENCE: &str = "evidence";

/// Why a data directory cannot be made or read. Each names the directory or file; an
/// I/O or key error underneath is the error's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    #[error(
        "{} is already initialised (found {found}); refusing to replace its CA, \
         which would cut off every enrolled agent. Use another --data directory.",
        .root.display()
    )]
    AlreadyInitialised { root: PathBuf, found: &'static str },
    #[error(
        "{} is not a Deskside data directory (no {CA_CERT}); run `deskside --data {} init` first",
        .root.display(),
        .root.display()
    )]
    NotInitialised { root: PathBuf },
    /// `doing` is what was being done to `path`: `creating`, `reading`, `removing`…
    #[error("{doing} {}", .path.display())]
    File {
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the CA from {}", .root.display())]
    LoadCa { root: PathBuf, source: CaError },
    #[error("making the record-signing certificate")]
    RecordSigning(#[source] CaError),
    #[error("encoding the script-signing key: {0}")]
    EncodeScriptKey(String),
    #[error("loading {SCRIPT_KEY}: {0}")]
    LoadScriptKey(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Pki(#[from] deskside_transport::TransportError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

type Result<T, E = DataDirError> = std::result::Result<T, E>;

/// `doing` `path` failed with the I/O error given to the closure.
fn file<'p>(
    doing: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> DataDirError + 'p {
    move |source| DataDirError::File {
        doing,
        path: path.to_owned(),
        source,
    }
}

/// Paths inside a data directory, and where this node's store is: the SQLite file in
/// it, or the shared PostgreSQL database (`[store] url`).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    store_url: Option<crate::store::PgUrl>,
}

/// Everything loaded from a data directory that the server needs in memory.
#[derive(Debug)]
pub struct Keys {
    pub ca: Ca,
    pub ca_sha256: [u8; 32],
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub script_key: SigningKey,
}

impl DataDir {
    /// A data directory whose store is the SQLite file in it.
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir {
            root: root.into(),
            store_url: None,
        }
    }

    /// The same directory with the store on PostgreSQL at `url` (`None`: SQLite).
    pub fn with_store(self, url: Option<crate::store::PgUrl>) -> DataDir {
        DataDir {
            store_url: url,
            ..self
        }
    }

    /// Where the store is.
    pub fn store_at(&self) -> crate::store::StoreAt {
        match &self.store_url {
            Some(url) => crate::store::StoreAt::Postgres(url.clone()),
            None => crate::store::StoreAt::Sqlite(self.database()),
        }
    }

    /// Opens this node's store (creating and migrating it if needed): every command and
    /// the server open it here.
    pub fn open_store(&self) -> crate::store::StoreResult<crate::store::Store> {
        crate::store::Store::open_at(&self.store_at())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database file (the store unless [`DataDir::with_store`] moved it).
    pub fn database(&self) -> PathBuf {
        self.root.join(DATABASE)
    }

    pub fn evidence(&self) -> PathBuf {
        self.root.join(EVIDENCE)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn read(&self, name: &str) -> Result<String> {
        let path = self.path(name);
        fs::read_to_string(&path).map_err(file("reading", &path))
    }

    /// Creates the CA, server certificate, script key and database. Refuses a directory
    /// that already holds a CA: overwriting it would orphan every enrolled machine.
    pub fn init(&self) -> Result<()> {
        for existing in [CA_CERT, CA_KEY, DATABASE] {
            if self.path(existing).exists() {
                return Err(DataDirError::AlreadyInitialised {
                    root: self.root.clone(),
                    found: existing,
                });
            }
        }
        // A PostgreSQL store that cannot be reached or is too new fails the command
        // before any key is written, leaving nothing half made.
        if self.store_url.is_some() {
            self.open_store()?;
        }
        fs::create_dir_all(&self.root).map_err(file("creating data directory", &self.root))?;
        restrict_dir(&self.root)?;
        fs::create_dir_all(self.evidence())?;

        let made = ca::new_ca()?;
        let ca = Ca::load(&made.cert_pem, &made.key_pem)?;
        let server = ca.server_cert(&[])?;
        let script_key = SigningKey::generate(&mut rand::rngs::OsRng);
        let script_pem = script_key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| DataDirError::EncodeScriptKey(e.to_string()))?;

        write_new(&self.path(CA_KEY), made.key_pem.as_bytes(), 0o600)?;
        write_new(&self.path(CA_CERT), made.cert_pem.as_bytes(), 0o644)?;
        write_new(&self.path(SERVER_KEY), server.key_pem.as_bytes(), 0o600)?;
        write_new(&self.path(SERVER_CERT), server.cert_pem.as_bytes(), 0o644)?;
        write_new(&self.path(SCRIPT_KEY), script_pem.as_bytes(), 0o600)?;
        self.make_record_signing(&ca)?;
        self.open_store()?;
        Ok(())
    }

    /// Loads the keys, with an error that says to run `init` when they are missing.
    pub fn load(&self) -> Result<Keys> {
        if !self.path(CA_CERT).exists() {
            return Err(DataDirError::NotInitialised {
                root: self.root.clone(),
            });
        }
        let read = |name: &str| self.read(name);
        let ca_pem = read(CA_CERT)?;
        let ca = Ca::load(&ca_pem, &read(CA_KEY)?).map_err(|source| DataDirError::LoadCa {
            root: self.root.clone(),
            source,
        })?;
        let ca_der = deskside_transport::pki::cert_from_pem(&ca_pem)?;
        let script_key = SigningKey::from_pkcs8_pem(&read(SCRIPT_KEY)?)
            .map_err(|e| DataDirError::LoadScriptKey(e.to_string()))?;
        Ok(Keys {
            ca,
            ca_sha256: deskside_transport::pki::fingerprint(&ca_der),
            server_cert_pem: read(SERVER_CERT)?,
            server_key_pem: read(SERVER_KEY)?,
            script_key,
        })
    }

    /// The key and certificate with which the controller signs the evidence it makes
    /// itself (session records); the certificate travels in every bundle. A data
    /// directory made before records were signed gets them here, when the server starts
    /// — only the server makes them, so an admin command run at the same moment cannot
    /// race it into a key that does not match its certificate.
    pub fn record_signing(&self, ca: &Ca) -> Result<CertAndKey> {
        if !self.path(RECORD_KEY).exists() || !self.path(RECORD_CERT).exists() {
            self.make_record_signing(ca)?;
        }
        let read = |name: &str| self.read(name);
        Ok(CertAndKey {
            cert_pem: read(RECORD_CERT)?,
            key_pem: read(RECORD_KEY)?,
        })
    }

    /// Makes the record-signing key and certificate, replacing a lone leftover half
    /// (a key without its certificate, or the reverse, is of no use).
    fn make_record_signing(&self, ca: &Ca) -> Result<()> {
        let made = ca
            .record_signing_cert()
            .map_err(DataDirError::RecordSigning)?;
        for name in [RECORD_KEY, RECORD_CERT] {
            match fs::remove_file(self.path(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(file("removing", &self.path(name))(e));
                }
                _ => {}
            }
        }
        write_new(&self.path(RECORD_KEY), made.key_pem.as_bytes(), 0o600)?;
        write_new(&self.path(RECORD_CERT), made.cert_pem.as_bytes(), 0o644)?;
        tracing::info!(dir = %self.root.display(), "made the record-signing key and certificate");
        Ok(())
    }
}

/// Writes a file that must not exist yet, with `mode`, and syncs it.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(file("creating", path))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn restrict_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(file("restricting", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_init_refuses() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = DataDir::new(tmp.path().join("data"));
        dir.init()?;
        let keys = dir.load()?;
        assert!(keys.server_cert_pem.contains("BEGIN CERTIFICATE"));
        let err = dir.init().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("already initialised"), "{err}");
        Ok(())
    }

    #[test]
    fn init_on_postgres_makes_its_tables_or_nothing() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        // Nothing listens on port 1: the command fails before writing any key.
        let unreachable = crate::store::PgUrl::parse("postgres://deskside@127.0.0.1:1/deskside")
            .map_err(anyhow::Error::msg)?;
        let dir = DataDir::new(tmp.path().join("a")).with_store(Some(unreachable));
        let err = dir.init().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("cannot reach PostgreSQL at postgres://deskside@127.0.0.1:1/deskside"),
            "{err}"
        );
        assert!(!dir.root().exists(), "a half-made data directory was left");

        let url = deskside_testpg::database().map_err(anyhow::Error::msg)?;
        let url = crate::store::PgUrl::parse(&url).map_err(anyhow::Error::msg)?;
        let dir = DataDir::new(tmp.path().join("b")).with_store(Some(url));
        dir.init()?;
        assert!(
            !dir.database().exists(),
            "no SQLite file beside a PostgreSQL store"
        );
        assert!(dir.open_store()?.blocking(|db| db.agents())?.is_empty());
        Ok(())
    }

    #[test]
    fn a_data_dir_without_a_record_key_gets_one_when_served() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = DataDir::new(tmp.path().join("data"));
        dir.init()?;
        let keys = dir.load()?;
        let first = dir.record_signing(&keys.ca)?;
        // As a data directory from before record signing was: loading its keys for an
        // admin command makes nothing.
        fs::remove_file(dir.path(RECORD_KEY))?;
        fs::remove_file(dir.path(RECORD_CERT))?;
        let keys = dir.load()?;
        assert!(!dir.path(RECORD_KEY).exists());
        let made = dir.record_signing(&keys.ca)?;
        assert_ne!(made.cert_pem, first.cert_pem);
        let again = dir.record_signing(&keys.ca)?;
        assert_eq!(again.cert_pem, made.cert_pem, "kept once made");
        // A leftover half (a crash between the two writes) is replaced by a whole pair.
        fs::remove_file(dir.path(RECORD_CERT))?;
        let whole = dir.record_signing(&keys.ca)?;
        assert_ne!(whole.key_pem, made.key_pem);
        let ca = deskside_transport::pki::cert_from_pem(&keys.ca.cert_pem)?;
        let cert = deskside_transport::pki::cert_from_pem(&made.cert_pem)?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert)?;
        assert!(cert.verify_signature(Some(ca.public_key())).is_ok());
        Ok(())
    }

    #[test]
    fn load_of_an_empty_dir_says_to_init() {
        let dir = DataDir::new("/nonexistent/deskside");
        let err = dir.load().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("run `deskside --data"), "{err}");
    }
}
