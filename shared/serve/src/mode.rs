//! Which of the three ways this process runs, from its environment.

/// How the handler is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A long-lived process with its own HTTP and gRPC addresses.
    Pod,
    /// A Knative service: one port for everything.
    Knative {
        /// `$PORT`.
        port: u16,
    },
    /// An AWS Lambda function (the runtime API is at `AWS_LAMBDA_RUNTIME_API`).
    Lambda,
}

impl Mode {
    /// The mode of this process: Lambda when `AWS_LAMBDA_RUNTIME_API` is set,
    /// Knative when `K_SERVICE` and `PORT` are, otherwise a pod.
    pub fn detect() -> crate::Result<Mode> {
        Mode::from_env(|k| std::env::var(k).ok())
    }

    /// [`Mode::detect`] over any environment.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> crate::Result<Mode> {
        if get("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty()) {
            return Ok(Mode::Lambda);
        }
        if get("K_SERVICE").is_some_and(|v| !v.is_empty()) {
            let port = get("PORT").unwrap_or_else(|| "8080".into());
            let port = port
                .parse()
                .map_err(|_| crate::Error::Env(format!("PORT={port:?} is not a port number")))?;
            return Ok(Mode::Knative { port });
        }
        Ok(Mode::Pod)
    }
}

#[cfg(test)]
mod tests {
    use super::Mode;
    use std::collections::HashMap;

    fn mode(vars: &[(&str, &str)]) -> crate::Result<Mode> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Mode::from_env(|k| env.get(k).cloned())
    }

    #[test]
    fn detects_each_mode() {
        assert_eq!(mode(&[]).unwrap(), Mode::Pod);
        assert_eq!(mode(&[("PORT", "9000")]).unwrap(), Mode::Pod);
        assert_eq!(
            mode(&[("K_SERVICE", "aether-query"), ("PORT", "9000")]).unwrap(),
            Mode::Knative { port: 9000 }
        );
        assert_eq!(
            mode(&[("K_SERVICE", "q")]).unwrap(),
            Mode::Knative { port: 8080 }
        );
        assert_eq!(
            mode(&[
                ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
                ("K_SERVICE", "q")
            ])
            .unwrap(),
            Mode::Lambda
        );
        let err = mode(&[("K_SERVICE", "q"), ("PORT", "http")]).unwrap_err();
        assert!(err.to_string().contains("PORT=\"http\""), "{err}");
    }
}
