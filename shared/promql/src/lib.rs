//! A PromQL engine with Prometheus 3 semantics, built on the `promql-parser` AST.
//!
//! The engine knows nothing of gRPC or HTTP: it reads series through the small
//! [`Queryable`] trait (select by matchers, with [`SelectHints`] so that a store can
//! push work down). Evaluation is split in two phases: the AST is walked to find the
//! time range each selector needs and every selector is fetched exactly once
//! (asynchronously); then the expression is evaluated synchronously over all steps at
//! once (step-vectorised: range windows slide over the fetched samples).
//!
//! [`Engine::instant_query`] and [`Engine::range_query`] return a [`QueryResult`]
//! with the value, Prometheus's warnings and infos, and its sample statistics
//! ([`QueryStats`]: the peak of samples held, which `max_samples` limits as
//! Prometheus does, and the samples read). The [`promqltest`] module
//! runs Prometheus's PromQL test scripts against the engine.

mod aggr;
pub mod blocks;
mod engine;
mod funcs;
mod hist;
mod info;
mod parse;
pub mod promqltest;
mod queryable;
mod samples;
mod value;
mod window;

pub use blocks::BlockQueryable;
pub use engine::{CancelToken, Engine, EngineOpts};
pub use parse::parse;
pub use queryable::{MemQueryable, Queryable, SelectHints, Series};
pub use samples::QueryStats;
pub use value::{QueryResult, RangeSeries, Sample, Value};
pub use window::WindowFilter;

/// Errors of query parsing and evaluation; the texts are Prometheus's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query does not parse or does not type-check.
    #[error("{0}")]
    Parse(String),
    /// An evaluation error (its text is Prometheus's).
    #[error("{0}")]
    Eval(String),
    /// The query ran past its timeout.
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The query was canceled through its [`CancelToken`].
    #[error("query was canceled in expression evaluation")]
    Canceled,
    /// The query would hold more samples in memory than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The series source failed.
    #[error("{0}")]
    Storage(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
