//! Pod and Knative serving: listeners per mode, HTTP and gRPC on them.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::Request;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::{Error, Mode, Result};

/// The sockets a handler serves on.
#[derive(Debug)]
pub struct Listeners {
    /// HTTP (and, when `grpc` is `None`, gRPC too).
    pub http: TcpListener,
    /// A separate gRPC socket (pods); `None` in Knative, where one port
    /// carries both.
    pub grpc: Option<TcpListener>,
}

async fn listen(what: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        what: what.to_string(),
        addr: addr.to_string(),
        source,
    })
}

/// Binds what `mode` serves on: a pod binds `http_addr` and (when the handler
/// serves gRPC) `grpc_addr`; Knative binds `0.0.0.0:$PORT` only.
pub async fn bind(mode: Mode, http_addr: &str, grpc_addr: Option<&str>) -> Result<Listeners> {
    match mode {
        Mode::Knative { port } => Ok(Listeners {
            http: listen("$PORT", &format!("0.0.0.0:{port}")).await?,
            grpc: None,
        }),
        Mode::Pod | Mode::Lambda => {
            let http = listen("--http-address", http_addr).await?;
            let grpc = match grpc_addr {
                Some(a) => Some(listen("--grpc-address", a).await?),
                None => None,
            };
            Ok(Listeners { http, grpc })
        }
    }
}

fn is_grpc(req: &Request<Body>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// One Router answering gRPC requests (by content type) from `grpc` and the
/// rest from `http`.
fn combined(http: Router, grpc: Router) -> Router {
    let svc = tower::service_fn(move |req: Request<Body>| {
        let (http, grpc) = (http.clone(), grpc.clone());
        async move {
            let resp = if is_grpc(&req) {
                grpc.oneshot(req).await
            } else {
                http.oneshot(req).await
            };
            Ok::<_, Infallible>(resp.unwrap_or_else(|e| match e {}))
        }
    });
    Router::new().fallback_service(svc)
}

/// Serves `http` (and `grpc`, if given) on `listeners` until `shutdown`
/// completes, then lets in-flight requests finish.
pub async fn serve(
    listeners: Listeners,
    http: Router,
    grpc: Option<tonic::service::Routes>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    match (grpc, listeners.grpc) {
        (Some(routes), Some(grpc_listener)) => {
            let grpc_task = tokio::spawn({
                let stop = stopped();
                async move {
                    tonic::transport::Server::builder()
                        .http2_keepalive_interval(Some(Duration::from_secs(30)))
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(
                            tonic::transport::server::TcpIncoming::from(grpc_listener)
                                .with_nodelay(Some(true)),
                            stop,
                        )
                        .await
                }
            });
            let http_res = axum::serve(listeners.http, http)
                .with_graceful_shutdown(stopped())
                .await;
            let grpc_res = grpc_task.await;
            http_res.map_err(|e| Error::Serve {
                what: "HTTP",
                message: e.to_string(),
            })?;
            grpc_res
                .map_err(|e| Error::Serve {
                    what: "gRPC",
                    message: e.to_string(),
                })?
                .map_err(|e| Error::Serve {
                    what: "gRPC",
                    message: e.to_string(),
                })
        }
        (Some(routes), None) => {
            let app = combined(http, routes.prepare().into_axum_router());
            axum::serve(listeners.http, app)
                .with_graceful_shutdown(stopped())
                .await
                .map_err(|e| Error::Serve {
                    what: "HTTP+gRPC",
                    message: e.to_string(),
                })
        }
        (None, _) => axum::serve(listeners.http, http)
            .with_graceful_shutdown(stopped())
            .await
            .map_err(|e| Error::Serve {
                what: "HTTP",
                message: e.to_string(),
            }),
    }
}

/// Completes on SIGTERM (how Kubernetes and Knative stop a pod) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
