//! The data model every other Aether crate speaks: label sets, label matchers with
//! Prometheus semantics, samples, and the Go-compatible text forms that Prometheus
//! tools print. Pure data and logic: no I/O.

pub mod dedup;
mod duration;
mod gofmt;
mod histogram;
mod labels;
mod matcher;

pub use duration::{duration_unit_ms, format_duration_ms, parse_duration_ms};
pub use gofmt::{format_go_float, go_quote};
pub use histogram::{bucket_upper_bound, CounterResetHint, FloatHistogram, Histogram, Span};
pub use labels::{prometheus_hash, Label, Labels, METRIC_NAME};
pub use matcher::{MatchType, Matcher};

/// Errors of the data model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A regular-expression matcher whose pattern does not compile.
    #[error("invalid regular expression {pattern:?} in matcher: {reason}")]
    BadRegex { pattern: String, reason: String },
}

/// One float sample: a millisecond timestamp and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// The bit pattern Prometheus writes for a staleness marker (a special NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a Prometheus staleness marker.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}
