//! Why the controller could not start serving: each variant names what it was doing.

use std::net::SocketAddr;

/// Why the controller could not start serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error("opening the store ({at})")]
    Database {
        /// Where the store is (a PostgreSQL URL without its password).
        at: crate::store::StoreAt,
        #[source]
        source: crate::store::StoreError,
    },
    #[error(transparent)]
    Pki(#[from] deskside_transport::TransportError),
    #[error("listening on UDP {listen}")]
    Listen {
        listen: SocketAddr,
        #[source]
        source: deskside_transport::TransportError,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("serving metrics on TCP {at}")]
    Metrics {
        at: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The web console could not start (address in use, bad certificate…).
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    /// `[cluster] nats` is set and routing between nodes could not start.
    #[error(transparent)]
    Route(#[from] crate::route::RouteError),
}
