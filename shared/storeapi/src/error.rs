//! The crate's error type and its mapping to and from gRPC status codes.

/// Errors of a StoreAPI call, in-process or remote. Each variant maps to one gRPC
/// status code (see [`Error::code`]), so an error crosses the wire and comes back
/// as the same variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed: a bad matcher (e.g. a regex that does not
    /// compile), an unknown enum value, an inverted time range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store does not implement the call or a requested option.
    #[error("unimplemented: {0}")]
    Unimplemented(String),
    /// The store cannot be reached (connection refused, closed, DNS, ...).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call ran out of time.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A limit was hit (message size, series or sample limits).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The call was cancelled.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// Stored or received data that does not decode (corrupt chunk, bad frame).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Any other failure inside the store.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result of StoreAPI calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC status code this error travels as.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::Unimplemented(_) => tonic::Code::Unimplemented,
            Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::DeadlineExceeded(_) => tonic::Code::DeadlineExceeded,
            Error::ResourceExhausted(_) => tonic::Code::ResourceExhausted,
            Error::Cancelled(_) => tonic::Code::Cancelled,
            Error::Corrupt(_) => tonic::Code::DataLoss,
            Error::Internal(_) => tonic::Code::Internal,
        }
    }

    /// The message without the variant prefix.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidArgument(m)
            | Error::Unimplemented(m)
            | Error::Unavailable(m)
            | Error::DeadlineExceeded(m)
            | Error::ResourceExhausted(m)
            | Error::Cancelled(m)
            | Error::Corrupt(m)
            | Error::Internal(m) => m,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code(), e.message().to_string())
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let m = s.message().to_string();
        match s.code() {
            tonic::Code::InvalidArgument => Error::InvalidArgument(m),
            // tonic reports a message over the size limit as OutOfRange (gRPC-Go
            // as ResourceExhausted).
            tonic::Code::OutOfRange => Error::ResourceExhausted(m),
            // A tonic server that hits the client's grpc-timeout cancels the call
            // with this message (gRPC-Go answers DeadlineExceeded).
            tonic::Code::Cancelled if m == "Timeout expired" => Error::DeadlineExceeded(m),
            tonic::Code::Unimplemented => Error::Unimplemented(m),
            tonic::Code::Unavailable => Error::Unavailable(m),
            tonic::Code::DeadlineExceeded => Error::DeadlineExceeded(m),
            tonic::Code::ResourceExhausted => Error::ResourceExhausted(m),
            tonic::Code::Cancelled => Error::Cancelled(m),
            tonic::Code::DataLoss => Error::Corrupt(m),
            tonic::Code::Internal => Error::Internal(m),
            code => Error::Internal(if m.is_empty() {
                format!("{code:?}")
            } else {
                format!("{code:?}: {m}")
            }),
        }
    }
}

impl From<model::Error> for Error {
    fn from(e: model::Error) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<tsdb::Error> for Error {
    fn from(e: tsdb::Error) -> Self {
        match e {
            tsdb::Error::Corrupt { .. } | tsdb::Error::Checksum { .. } => {
                Error::Corrupt(e.to_string())
            }
            tsdb::Error::Unsupported { .. } => Error::Unimplemented(e.to_string()),
            tsdb::Error::Model(m) => m.into(),
            _ => Error::Internal(e.to_string()),
        }
    }
}
