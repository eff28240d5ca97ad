//! Query results.

use model::{FloatHistogram, Labels};

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    /// Milliseconds.
    pub t: i64,
    /// The float value (0 when the sample is a histogram).
    pub v: f64,
    /// The histogram value, for a histogram sample.
    pub h: Option<FloatHistogram>,
}

/// One series of a range vector (matrix).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, FloatHistogram)>,
}

/// The value of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<Sample>),
    Matrix(Vec<RangeSeries>),
}

/// A query's value with the annotations Prometheus reports.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// Texts start with `PromQL warning: `.
    pub warnings: Vec<String>,
    /// Texts start with `PromQL info: `.
    pub infos: Vec<String>,
    /// Samples held at the peak and read in total, as Prometheus counts them.
    pub stats: crate::samples::QueryStats,
}
