//! `aether query`: the querier. PromQL and Prometheus's HTTP API over every
//! StoreAPI endpoint (sidecars, stores, other queriers), with Thanos's HA
//! deduplication, partial response and downsampled reads, and a web UI.
//!
//! - [`endpoints`]: discovery (`host:port`, `dns+host:port`, `dnssrv+name`,
//!   file SD; DNS via [`dns`] on hickory-resolver) and each endpoint's Info and health, refreshed on demand.
//! - [`fanout`]: [`StoreQueryable`], the engine's `Queryable` over the endpoints
//!   (concurrent, matchers / time range / hints pushed down), series and labels.
//! - [`dedup`]: merging replicas (Thanos's penalty-based sample choice).
//! - [`api`]: the axum [`Router`](axum::Router) with Prometheus's `/api/v1/...`
//!   (exact JSON), the UI and health endpoints; [`json`] and [`params`] hold the
//!   encodings Prometheus uses.
//! - [`metrics`]: `/metrics` (Thanos's `http_requests_total` and
//!   `http_request_duration_seconds` per handler).
//! - [`proxy`]: [`ProxyStore`], the querier's own StoreAPI (queriers stack).
//! - [`rules_proxy`]: `/api/v1/rules` and `/api/v1/alerts` merged from the
//!   rulers' HTTP APIs (`--rule.url`).
//!
//! The handler is stateless: [`api::router`] over a [`Querier`] answers any
//! request on its own; nothing assumes a long-lived process.

pub mod api;
pub mod dedup;
pub mod dns;
pub mod endpoints;
pub mod fanout;
pub mod format;
pub mod json;
pub mod metrics;
pub mod params;
pub mod proxy;
pub mod rules_proxy;
mod ui;

use std::future::Future;
use std::sync::Arc;

pub use api::{router, Querier, QuerierConfig};
pub use endpoints::{Endpoint, EndpointSet, EndpointStatus, Health, Intervals};
pub use fanout::{QueryOptions, StoreQueryable};
pub use proxy::ProxyStore;

/// Serves `querier` over HTTP on `listener` until `shutdown` completes.
pub async fn serve(
    querier: Arc<Querier>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(querier))
        .with_graceful_shutdown(shutdown)
        .await
}
