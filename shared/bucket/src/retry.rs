//! Retrying transient failures.
//!
//! Two layers:
//! - Every S3 request is retried inside object_store per [`object_store::RetryConfig`]
//!   (5xx, 429, connection errors, timeouts of idempotent requests), bounded by
//!   [`default_request_retry`]: a short outage is invisible to callers.
//! - Callers that must get through a longer outage (the sidecar shipping a block
//!   "for as long as it takes") wrap a whole operation in [`with_backoff`] with a
//!   [`RetryPolicy`] such as [`RetryPolicy::forever`]; errors that
//!   [`is_transient`] rejects (not found, auth, bad data) return at once.

use std::error::Error as StdError;
use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use object_store::client::{HttpError, HttpErrorKind};
use object_store::{BackoffConfig, RetryConfig};
use rand::Rng;

/// The request-level retry config used for S3 stores built from objstore YAML:
/// backoff 100 ms doubling to 10 s, at most 10 retries within 2 minutes.
pub fn default_request_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(120),
    }
}

/// Errors that can say whether trying again later may succeed.
pub trait Retryable {
    fn is_transient(&self) -> bool;
}

impl Retryable for object_store::Error {
    fn is_transient(&self) -> bool {
        is_transient(self)
    }
}

/// Whether an object_store error is worth retrying: server errors (5xx), throttling
/// (429, 408, S3's 200-with-`InternalError`/`SlowDown`), timeouts and connection
/// failures (refused, reset, aborted, closed mid-body). Not-found, precondition,
/// permission and authentication errors, bad paths and unsupported operations are
/// not transient.
pub fn is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => false,
        other => chain_is_transient(other),
    }
}

/// Walks an error's source chain. object_store's own `RetryError` type is private,
/// so an HTTP status is read from its message ("non-2xx status code: 503 ...");
/// transport failures are the public [`HttpError`] and its [`HttpErrorKind`].
fn chain_is_transient(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io_is_transient(io) {
                return true;
            }
        }
        let msg = err.to_string();
        if let Some(status) = status_in_message(&msg) {
            return status >= 500 || status == 429 || status == 408;
        }
        if msg.contains("Server returned error response") {
            // A 200 whose body says InternalError or SlowDown.
            return true;
        }
        cur = err.source();
    }
    false
}

fn io_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::TimedOut
            | K::Interrupted
            | K::BrokenPipe
            | K::UnexpectedEof
    )
}

fn status_in_message(msg: &str) -> Option<u16> {
    const MARK: &str = "non-2xx status code: ";
    let at = msg.find(MARK)? + MARK.len();
    let digits: String = msg[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Exponential backoff with jitter for retrying whole operations.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of one delay.
    pub max_backoff: Duration,
    /// Growth factor of the delay per attempt.
    pub multiplier: f64,
    /// Fraction of each delay that is randomized (0 = none, 1 = anywhere in
    /// `0..delay`); spreads out clients that failed together.
    pub jitter: f64,
    /// Give up after this many attempts in total (None = no limit).
    pub max_attempts: Option<u32>,
    /// Give up when this much time has passed since the first attempt (None = no limit).
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 200 ms doubling to 30 s, half jitter, for at most 5 minutes.
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
            max_elapsed: Some(Duration::from_secs(300)),
        }
    }
}

impl RetryPolicy {
    /// Retries transient errors with no limit (delays capped at 30 s).
    pub fn forever() -> Self {
        RetryPolicy {
            max_attempts: None,
            max_elapsed: None,
            ..Default::default()
        }
    }

    /// No retries: the operation runs once.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: Some(1),
            ..Default::default()
        }
    }

    /// At most `n` attempts in total.
    pub fn attempts(n: u32) -> Self {
        RetryPolicy {
            max_attempts: Some(n.max(1)),
            max_elapsed: None,
            ..Default::default()
        }
    }

    pub fn with_initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    pub fn with_max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    pub fn with_max_elapsed(mut self, d: Option<Duration>) -> Self {
        self.max_elapsed = d;
        self
    }

    /// The delay after failed attempt number `attempt` (1-based), jitter applied.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(64) as i32;
        let mult = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let base = self.initial_backoff.as_secs_f64() * mult.powi(exp);
        let capped = base.min(self.max_backoff.as_secs_f64()).max(0.0);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let r: f64 = rand::rng().random();
        Duration::from_secs_f64(capped * (1.0 - jitter * r))
    }

    fn gives_up(&self, attempts: u32, started: Instant, next_delay: Duration) -> bool {
        if self.max_attempts.is_some_and(|m| attempts >= m) {
            return true;
        }
        self.max_elapsed
            .is_some_and(|m| started.elapsed() + next_delay > m)
    }
}

/// Runs `op` until it succeeds, fails with an error that is not transient, or
/// `policy` gives up; sleeps with backoff between attempts and logs each retry.
pub async fn with_backoff<T, E, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, E>
where
    E: Retryable + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    with_backoff_if(policy, |e: &E| e.is_transient(), op).await
}

/// Like [`with_backoff`] with a caller-given classification of retryable errors.
pub async fn with_backoff_if<T, E, C, F, Fut>(
    policy: &RetryPolicy,
    classify: C,
    mut op: F,
) -> Result<T, E>
where
    E: Display,
    C: Fn(&E) -> bool,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match op().await {
            Ok(v) => {
                if attempts > 1 {
                    tracing::info!(attempts, "operation succeeded after retries");
                }
                return Ok(v);
            }
            Err(e) => {
                if !classify(&e) {
                    return Err(e);
                }
                let delay = policy.backoff(attempts);
                if policy.gives_up(attempts, started, delay) {
                    tracing::warn!(attempts, error = %e, "giving up retrying transient error");
                    return Err(e);
                }
                tracing::warn!(
                    attempts,
                    delay_ms = delay.as_millis() as u64,
                    error = %e,
                    "transient error, retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: msg.to_string().into(),
        }
    }

    #[test]
    fn classification() {
        let nf = object_store::Error::NotFound {
            path: "a".into(),
            source: "x".into(),
        };
        assert!(!is_transient(&nf));
        let denied = object_store::Error::PermissionDenied {
            path: "a".into(),
            source: "x".into(),
        };
        assert!(!is_transient(&denied));
        assert!(is_transient(&generic(
            "Error performing GET http://x in 1s - Server returned non-2xx status code: 503 Service Unavailable: "
        )));
        assert!(is_transient(&generic(
            "Server returned non-2xx status code: 429 Too Many Requests"
        )));
        assert!(!is_transient(&generic(
            "Server returned non-2xx status code: 400 Bad Request: <Error/>"
        )));
        assert!(is_transient(&generic(
            "Server returned error response: <Code>SlowDown</Code>"
        )));
        let conn = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Connect,
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            )),
        };
        assert!(is_transient(&conn));
        let decode = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Unknown,
                std::io::Error::other("weird"),
            )),
        };
        assert!(!is_transient(&decode));
        let reset = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        };
        assert!(is_transient(&reset));
        assert!(!is_transient(&generic("something else")));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(30), Duration::from_secs(30));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(30));
        let j = RetryPolicy::default();
        for _ in 0..100 {
            let d = j.backoff(3);
            assert!(d <= Duration::from_millis(800) && d >= Duration::from_millis(400));
        }
    }

    #[tokio::test]
    async fn retries_transient_then_succeeds() {
        let calls = AtomicU32::new(0);
        let p = RetryPolicy::forever().with_initial_backoff(Duration::from_millis(1));
        let r: Result<u32, object_store::Error> = with_backoff(&p, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 3 {
                Err(generic("Server returned non-2xx status code: 500 Internal"))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
    }

    #[tokio::test]
    async fn permanent_errors_return_at_once_and_limits_hold() {
        let calls = AtomicU32::new(0);
        let p = RetryPolicy::forever().with_initial_backoff(Duration::from_millis(1));
        let r: Result<(), object_store::Error> = with_backoff(&p, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(object_store::Error::NotFound {
                path: "x".into(),
                source: "gone".into(),
            })
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let p = RetryPolicy::attempts(4).with_initial_backoff(Duration::from_millis(1));
        let r: Result<(), object_store::Error> = with_backoff(&p, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(generic(
                "Server returned non-2xx status code: 502 Bad Gateway",
            ))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
