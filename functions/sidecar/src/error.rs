//! The sidecar's error type. Every user-caused problem (bad objstore config,
//! Prometheus unreachable or without external labels, bad addresses) is a variant
//! with a message that says what to fix.

use std::path::PathBuf;

/// Errors of the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The objstore configuration could not be read or used.
    #[error("objstore configuration ({source_desc}): {reason}")]
    Objstore { source_desc: String, reason: String },

    /// Prometheus could not be reached or answered with an error.
    #[error("Prometheus at {url}: {reason}")]
    Prometheus { url: String, reason: String },

    /// Prometheus runs without external labels: blocks could not be told apart
    /// in the bucket, so the sidecar does not ship them.
    #[error(
        "Prometheus at {url} has no external labels; set `global.external_labels` \
         (e.g. cluster and replica) in its configuration so that its blocks can be told \
         apart in the bucket. Refusing to ship blocks without them"
    )]
    NoExternalLabels { url: String },

    /// A local file operation failed.
    #[error("{context} {}: {source}", path.display())]
    Local {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A block failed verification and is not uploaded.
    #[error("block {} failed verification: {reason}", path.display())]
    BadBlock { path: PathBuf, reason: String },

    /// A bucket operation failed.
    #[error(transparent)]
    Bucket(#[from] bucket::Error),

    /// Binding or running a server failed.
    #[error("{what} on {addr}: {reason}")]
    Server {
        what: &'static str,
        addr: String,
        reason: String,
    },
}

/// Results of the sidecar.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn local(
        context: &'static str,
        path: impl Into<PathBuf>,
        e: std::io::Error,
    ) -> Self {
        Error::Local {
            context,
            path: path.into(),
            source: e,
        }
    }

    pub(crate) fn prom(url: &str, reason: impl Into<String>) -> Self {
        Error::Prometheus {
            url: url.to_string(),
            reason: reason.into(),
        }
    }
}
