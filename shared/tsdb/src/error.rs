/// Errors of the block format. Corrupt or hostile input always ends up here, never
/// in a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes that do not decode as the format says (bad magic, varint, bounds, ...).
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// A section whose CRC32-Castagnoli does not match its bytes.
    #[error("checksum mismatch in {what}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        what: String,
        stored: u32,
        computed: u32,
    },
    /// A format version or encoding this crate does not handle.
    #[error("unsupported {what}: {detail}")]
    Unsupported { what: String, detail: String },
    /// Input that breaks a writer's contract (series out of order, samples out of order).
    #[error("invalid input to {what}: {reason}")]
    InvalidInput { what: String, reason: String },
    /// A `meta.json` that is not valid JSON of the expected shape.
    #[error("invalid meta.json: {0}")]
    Meta(#[from] serde_json::Error),
    /// A label matcher that could not be built.
    #[error(transparent)]
    Model(#[from] model::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
