//! One handler, three ways. Every stateless Aether handler (query, store-read,
//! compact, rule) is an axum [`Router`](axum::Router) (plus, where it serves
//! the StoreAPI, tonic gRPC [`Routes`](tonic::service::Routes)); this crate
//! runs it:
//!
//! - as a long-lived **pod**: HTTP on `--http-address`, gRPC on
//!   `--grpc-address` ([`Mode::Pod`]);
//! - as a **Knative** service: one port, `0.0.0.0:$PORT`, HTTP/1.1 and h2c on
//!   it, gRPC told apart by its content type ([`Mode::Knative`]);
//! - as an **AWS Lambda** function ([`Mode::Lambda`], `AWS_LAMBDA_RUNTIME_API`
//!   set): the Router behind a Function URL with response streaming
//!   ([`lambda::run_http`]), or a JSON-event handler ([`lambda::run_events`]).
//!
//! [`lambda::AwsInvoker`] invokes other functions (the querier's fan-out to
//! store-read functions, [`storeapi::lambda`]) through the AWS SDK.
//!
//! Entry points stay thin: they build the handler and call [`serve`] or the
//! [`lambda`] runners; nothing here knows what the handler does.

pub mod lambda;
mod mode;
mod server;

pub use mode::Mode;
pub use server::{bind, serve, shutdown_signal, Listeners};

/// Errors of the serving layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// What the address is for (`--http-address`, `$PORT`, ...).
        what: String,
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A server stopped with an error.
    #[error("{what} server: {message}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// The cause.
        message: String,
    },
    /// The environment is not what a mode needs (e.g. `PORT` not a number).
    #[error("environment: {0}")]
    Env(String),
    /// The Lambda runtime failed.
    #[error("lambda runtime: {0}")]
    Lambda(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
