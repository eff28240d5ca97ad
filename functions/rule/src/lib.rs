//! `aether rule`: the ruler. Evaluates Prometheus recording and alerting rules over
//! the global view (a querier's HTTP API, or StoreAPI endpoints through the
//! embedded PromQL engine), sends alerts to Alertmanagers, records the results
//! in its own head (served over the StoreAPI, cut into blocks, shipped to the
//! bucket), and keeps the state that must survive between evaluations in the
//! bucket so that one evaluation is one stateless handler call.
//!
//! Modules:
//! - [`rulefile`]: rule files (Prometheus's format plus Thanos's
//!   `partial_response_strategy`), strict parsing and validation with
//!   Prometheus's error texts and positions; `rules-check`.
//! - [`template`]: Go `text/template` for alert labels and annotations, with
//!   Prometheus's functions (`humanize*`, ...).
//! - [`alert`]: the alert state machine (pending, firing, resolved,
//!   `keep_firing_for`, `ALERTS` / `ALERTS_FOR_STATE`), pure and serialisable.
//! - [`querier`]: the [`querier::RuleQuerier`] seam; HTTP (`--query`) and
//!   embedded engine (`--endpoint`) implementations; partial response strategy.
//! - [`notifier`]: Alertmanager API v2 client with retries, several
//!   Alertmanagers.
//! - [`bucket_sink`]: recorded samples kept in the bucket (pending objects cut
//!   into blocks), for a ruler without a disk (Lambda).
//! - [`head`]: the ruler's storage: durable log, StoreAPI, block cutting,
//!   shipping.
//! - [`ruler`]: [`ruler::Ruler::tick`], the stateless evaluation step, and the
//!   state kept in the bucket (conditional writes).
//! - [`api`]: HTTP: `/api/v1/rules`, `/api/v1/alerts` (Prometheus's JSON),
//!   `/metrics`, health, `POST /-/reload`.

pub mod alert;
pub mod api;
pub mod bucket_sink;
pub mod head;
pub mod notifier;
pub mod querier;
pub mod rulefile;
pub mod ruler;
pub mod template;
mod yaml;

pub use head::Head;
pub use ruler::{EvaluatedGroup, Ruler, RulerConfig, TickReport, TickSummary};

/// Errors of the ruler library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Rule files failed to load; one entry per problem (`FILE: error`).
    #[error("{}", .0.join("\n"))]
    RuleFiles(Vec<String>),
    /// Bad configuration (flags, URLs).
    #[error("{0}")]
    Config(String),
    /// A rule's query failed (or was partial under the abort strategy).
    #[error("{0}")]
    Query(String),
    /// Local storage or bucket state failed.
    #[error("{0}")]
    Storage(String),
    /// No Alertmanager took the alerts.
    #[error("{0}")]
    Notify(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
