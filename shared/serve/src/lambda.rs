//! AWS Lambda: the runtime loop for HTTP handlers (Function URL / API Gateway
//! events, response streaming) and for JSON-event handlers, and the invoker
//! that calls other functions through the AWS SDK.

use std::future::Future;

use axum::Router;
use storeapi::lambda::Invoker;

use crate::{Error, Result};

/// Runs `router` as a Lambda function behind a Function URL or API Gateway
/// until the runtime stops. Responses stream (Function URL `RESPONSE_STREAM`
/// mode, up to 20 MB and sent as they are produced) unless
/// `AETHER_LAMBDA_STREAMING=false`, for functions configured `BUFFERED`.
pub async fn run_http(router: Router) -> Result<()> {
    let streaming = std::env::var("AETHER_LAMBDA_STREAMING")
        .map(|v| v != "false" && v != "0")
        .unwrap_or(true);
    let r = if streaming {
        lambda_http::run_with_streaming_response(router).await
    } else {
        lambda_http::run(router).await
    };
    r.map_err(|e| Error::Lambda(e.to_string()))
}

/// Runs `handler` over the function's JSON events until the runtime stops;
/// it gets each event and the invocation's deadline (Unix ms). An `Err`
/// answer is reported to Lambda as a function error with that message (the
/// invocation fails; nothing panics).
pub async fn run_events<F, Fut>(handler: F) -> Result<()>
where
    F: Fn(serde_json::Value, i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<serde_json::Value, String>> + Send,
{
    let handler = std::sync::Arc::new(handler);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |ev: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let handler = std::sync::Arc::clone(&handler);
            let deadline = i64::try_from(ev.context.deadline).unwrap_or(i64::MAX);
            async move {
                handler(ev.payload, deadline)
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
        },
    ))
    .await
    .map_err(|e| Error::Lambda(e.to_string()))
}

/// Invokes functions through the AWS SDK (`lambda:InvokeFunction`,
/// synchronous). Region, credentials and endpoint come from the environment
/// as for any AWS SDK (`AWS_REGION`, the function's role, and
/// `AWS_ENDPOINT_URL_LAMBDA` for a local emulator).
#[derive(Clone, Debug)]
pub struct AwsInvoker {
    client: aws_sdk_lambda::Client,
}

impl AwsInvoker {
    /// An invoker configured from the environment.
    pub async fn from_env() -> AwsInvoker {
        let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        AwsInvoker {
            client: aws_sdk_lambda::Client::new(&conf),
        }
    }
}

#[async_trait::async_trait]
impl Invoker for AwsInvoker {
    async fn invoke(&self, function: &str, payload: Vec<u8>) -> storeapi::Result<Vec<u8>> {
        let out = self
            .client
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                storeapi::Error::Unavailable(format!(
                    "invoking function {function}: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(&e)
                ))
            })?;
        let body = out.payload.map(|b| b.into_inner()).unwrap_or_default();
        if let Some(kind) = out.function_error {
            return Err(storeapi::Error::Unavailable(format!(
                "function {function} failed ({kind}): {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            )));
        }
        Ok(body)
    }
}
