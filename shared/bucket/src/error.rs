//! The crate's error type. Every variant that concerns an object names the bucket
//! (the store's display name, e.g. `s3://thanos/prefix`) and the key.

use std::path::PathBuf;

use crate::retry::Retryable;

/// Errors of the bucket layer. User-caused problems (bad config, missing files,
/// corrupt objects) all end up here, never in a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The objstore configuration is invalid (bad YAML, missing field, unset variable).
    #[error("objstore config: {0}")]
    Config(String),

    /// A request to the object store failed.
    #[error("{op} {bucket}/{key}: {source}")]
    Store {
        op: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },

    /// An object that must exist does not.
    #[error("object {bucket}/{key} not found")]
    NotFound { bucket: String, key: String },

    /// An object's content is not what it must be (bad JSON, wrong version, ...).
    #[error("invalid object {bucket}/{key}: {reason}")]
    InvalidObject {
        bucket: String,
        key: String,
        reason: String,
    },

    /// An uploaded or downloaded object's size differs from the source.
    #[error("size mismatch for {bucket}/{key}: expected {expected} bytes, found {actual}")]
    SizeMismatch {
        bucket: String,
        key: String,
        expected: u64,
        actual: u64,
    },

    /// A local file's size changed between listing and reading it.
    #[error("local file {} changed while uploading: expected {expected} bytes, read {actual}", path.display())]
    LocalFileChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    /// A local file operation failed.
    #[error("{context} {}: {source}", path.display())]
    Local {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A local directory is not a usable block directory.
    #[error("invalid block directory {}: {reason}", path.display())]
    InvalidBlockDir { path: PathBuf, reason: String },

    /// The block format crate rejected local data (e.g. a local `meta.json`).
    #[error(transparent)]
    Tsdb(Box<tsdb::Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tsdb::Error> for Error {
    fn from(e: tsdb::Error) -> Self {
        Error::Tsdb(Box::new(e))
    }
}

impl Error {
    /// Wraps an object_store error for `op` on `bucket/key`; a not-found answer
    /// becomes [`Error::NotFound`].
    pub fn store(
        op: &'static str,
        bucket: impl Into<String>,
        key: impl Into<String>,
        source: object_store::Error,
    ) -> Self {
        let bucket = bucket.into();
        let key = key.into();
        if matches!(source, object_store::Error::NotFound { .. }) {
            return Error::NotFound { bucket, key };
        }
        Error::Store {
            op,
            bucket,
            key,
            source: Box::new(source),
        }
    }

    pub(crate) fn local(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Local {
            context,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid_object(
        bucket: impl Into<String>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidObject {
            bucket: bucket.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Whether the error is a missing object.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether retrying the same operation later may succeed (server errors,
    /// timeouts, refused or reset connections). Not-found, auth, config and data
    /// errors are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Store { source, .. } => crate::retry::is_transient(source),
            // Local I/O errors are the caller's disk, not the network: a retry of the
            // whole operation will not fix them.
            _ => false,
        }
    }
}

impl Retryable for Error {
    fn is_transient(&self) -> bool {
        Error::is_transient(self)
    }
}
