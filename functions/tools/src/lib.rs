//! `aether tools`: operator tools over TSDB blocks and buckets (dump, analyze,
//! bucket ls/inspect/mark/verify/retention/web, backfill from
//! OpenMetrics). The `cli` module holds their flags; each tool is a module with a
//! plain function so tests and other crates can call it without a process.

pub mod analyze;
pub mod backfill;
pub mod bucket_inspect;
pub mod bucket_lifecycle;
pub mod bucket_tools;
pub mod bucket_verify;
pub mod bucket_web;
pub mod cli;
pub mod demo;
pub mod dump;
pub mod openmetrics;

/// Errors of the tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tsdb(#[from] tsdb::Error),
    #[error(transparent)]
    Model(#[from] model::Error),
    #[error(transparent)]
    Parse(#[from] openmetrics::ParseError),
    #[error(transparent)]
    Bucket(#[from] bucket::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    /// A check ran and found problems (e.g. `bucket verify`).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
