//! A local AWS Lambda emulator speaking the real protocols, so that tests run
//! the function binaries exactly as Lambda does:
//!
//! - the **runtime API** (`/2018-06-01/runtime/...`) that a function process
//!   polls for invocations (`AWS_LAMBDA_RUNTIME_API` points here), including
//!   streamed responses (`Lambda-Runtime-Function-Response-Mode: streaming`);
//! - the **Invoke API** (`POST /2015-03-31/functions/<name>/invocations`)
//!   that the AWS SDK calls (`AWS_ENDPOINT_URL_LAMBDA` points here), so one
//!   function can invoke another through the SDK.
//!
//! One emulator hosts one function; [`Emulator::spawn`] starts its process.
//! It records when the process first asked for work (its init time).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot};

use crate::Proc;

/// What a function answered to one invocation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The response body (`Ok`) or the error document (`Err`).
    pub result: std::result::Result<Bytes, Bytes>,
    /// The function streamed its response.
    pub streamed: bool,
}

struct Pending {
    id: String,
    payload: Bytes,
    reply: oneshot::Sender<Outcome>,
}

struct Inner {
    queue_tx: mpsc::Sender<Pending>,
    queue_rx: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_next: Mutex<Option<Instant>>,
    init_error: Mutex<Option<String>>,
    function: String,
    seq: Mutex<u64>,
}

impl Inner {
    fn count(&self) -> u64 {
        *self.seq.lock().unwrap()
    }
}

/// A local Lambda for one function.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
    addr: std::net::SocketAddr,
}

const DEADLINE: Duration = Duration::from_secs(60);

async fn next(State(inner): State<Arc<Inner>>) -> Response {
    {
        let mut f = inner.first_next.lock().unwrap();
        if f.is_none() {
            *f = Some(Instant::now());
        }
    }
    let mut rx = inner.queue_rx.lock().await;
    let Some(p) = rx.recv().await else {
        return StatusCode::GONE.into_response();
    };
    drop(rx);
    inner
        .in_flight
        .lock()
        .unwrap()
        .insert(p.id.clone(), p.reply);
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + DEADLINE;
    Response::builder()
        .status(StatusCode::OK)
        .header("lambda-runtime-aws-request-id", &p.id)
        .header(
            "lambda-runtime-deadline-ms",
            deadline.as_millis().to_string(),
        )
        .header(
            "lambda-runtime-invoked-function-arn",
            format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                inner.function
            ),
        )
        .header(
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000",
        )
        .header("content-type", "application/json")
        .body(Body::from(p.payload))
        .unwrap()
}

async fn response(
    State(inner): State<Arc<Inner>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let streamed = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|v| v == "streaming");
    match inner.in_flight.lock().unwrap().remove(&id) {
        Some(tx) => {
            let _ = tx.send(Outcome {
                result: Ok(body),
                streamed,
            });
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn error(
    State(inner): State<Arc<Inner>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    match inner.in_flight.lock().unwrap().remove(&id) {
        Some(tx) => {
            let _ = tx.send(Outcome {
                result: Err(body),
                streamed: false,
            });
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    *inner.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// The Invoke API: the SDK's `Invoke` of this emulator's function.
async fn invoke_api(
    State(emu): State<Emulator>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Response {
    if name != emu.inner.function {
        return (
            StatusCode::NOT_FOUND,
            [("x-amzn-errortype", "ResourceNotFoundException")],
            format!("{{\"Type\":\"User\",\"message\":\"Function not found: {name}\"}}"),
        )
            .into_response();
    }
    match emu.invoke(body.to_vec()).await {
        Ok(o) => match o.result {
            Ok(b) => (StatusCode::OK, b).into_response(),
            Err(b) => (StatusCode::OK, [("x-amz-function-error", "Unhandled")], b).into_response(),
        },
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

impl Emulator {
    /// An emulator for `function` listening on a free loopback port.
    pub async fn start(function: &str) -> Result<Emulator> {
        let (tx, rx) = mpsc::channel(64);
        let inner = Arc::new(Inner {
            queue_tx: tx,
            queue_rx: tokio::sync::Mutex::new(rx),
            in_flight: Mutex::new(HashMap::new()),
            first_next: Mutex::new(None),
            init_error: Mutex::new(None),
            function: function.to_string(),
            seq: Mutex::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let emu = Emulator {
            inner: Arc::clone(&inner),
            addr,
        };
        let runtime = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&inner));
        let invoke = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke_api))
            .with_state(emu.clone());
        let app = runtime.merge(invoke);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(emu)
    }

    /// `host:port` for `AWS_LAMBDA_RUNTIME_API` and `AWS_ENDPOINT_URL_LAMBDA`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Starts the function's process (`bin`) against this emulator, with the
    /// variables Lambda sets and `env`. The process's output goes to `log`.
    pub fn spawn(&self, bin: &Path, env: &[(&str, String)], log: &Path) -> Result<Proc> {
        let mut cmd = Command::new(bin);
        cmd.env("AWS_LAMBDA_RUNTIME_API", self.addr())
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.inner.function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "local")
            .env("AWS_REGION", "us-east-1")
            .env_remove("K_SERVICE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        *self.inner.first_next.lock().unwrap() = None;
        Proc::spawn(&self.inner.function, &mut cmd, log.to_path_buf())
    }

    /// When the process first polled for an invocation (init finished).
    pub fn first_poll(&self) -> Option<Instant> {
        *self.inner.first_next.lock().unwrap()
    }

    /// Waits until the process polls for work, or `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Instant> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(t) = self.first_poll() {
                return Ok(t);
            }
            if let Some(e) = self.inner.init_error.lock().unwrap().clone() {
                bail!("function {} failed to init: {e}", self.inner.function);
            }
            if Instant::now() > end {
                bail!(
                    "function {} did not poll for work within {timeout:?}",
                    self.inner.function
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// How many invocations the function has been given.
    pub fn invocations(&self) -> u64 {
        self.inner.count()
    }

    /// Invokes the function with `payload` and waits for its answer.
    pub async fn invoke(&self, payload: Vec<u8>) -> Result<Outcome> {
        let id = {
            let mut s = self.inner.seq.lock().unwrap();
            *s += 1;
            format!("req-{:08}", *s)
        };
        let (tx, rx) = oneshot::channel();
        self.inner
            .queue_tx
            .send(Pending {
                id,
                payload: Bytes::from(payload),
                reply: tx,
            })
            .await
            .context("emulator queue closed")?;
        tokio::time::timeout(DEADLINE, rx)
            .await
            .context("function timed out")?
            .context("function went away without answering")
    }
}

/// A Function URL event (API Gateway HTTP API payload 2.0) for a request.
pub fn function_url_event(method: &str, path: &str, query: &str, body: Option<&str>) -> Vec<u8> {
    let mut headers = serde_json::Map::new();
    headers.insert("host".into(), "abc.lambda-url.us-east-1.on.aws".into());
    if body.is_some() {
        headers.insert(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        );
    }
    let ev = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "aether-tests"
            },
            "requestId": "r",
            "routeKey": "$default",
            "stage": "$default",
            "time": "27/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0
        },
        "body": body,
        "isBase64Encoded": false
    });
    serde_json::to_vec(&ev).unwrap()
}

/// An HTTP answer of a function, from its streamed (prelude, 8 NULs, body) or
/// buffered (JSON with statusCode/body) response.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

/// Decodes an HTTP function's answer.
pub fn http_answer(o: &Outcome) -> Result<HttpAnswer> {
    let bytes = match &o.result {
        Ok(b) => b,
        Err(e) => bail!("function error: {}", String::from_utf8_lossy(e)),
    };
    if o.streamed {
        let sep = bytes
            .windows(8)
            .position(|w| w == [0u8; 8])
            .context("streamed answer without the 8-NUL prelude separator")?;
        let prelude: serde_json::Value = serde_json::from_slice(&bytes[..sep])?;
        return Ok(HttpAnswer {
            status: prelude["statusCode"].as_u64().unwrap_or(200) as u16,
            headers: prelude["headers"].clone(),
            body: bytes[sep + 8..].to_vec(),
        });
    }
    let v: serde_json::Value = serde_json::from_slice(bytes)?;
    let body = v["body"].as_str().unwrap_or_default();
    let body = if v["isBase64Encoded"].as_bool() == Some(true) {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(body)?
    } else {
        body.as_bytes().to_vec()
    };
    Ok(HttpAnswer {
        status: v["statusCode"].as_u64().unwrap_or(200) as u16,
        headers: v["headers"].clone(),
        body,
    })
}
