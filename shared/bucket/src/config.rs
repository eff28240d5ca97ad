//! Thanos objstore YAML (`--objstore.config` / `--objstore.config-file`):
//!
//! ```yaml
//! type: S3            # or FILESYSTEM; case-insensitive
//! prefix: some/prefix # optional
//! config:
//!   bucket: thanos
//!   endpoint: 127.0.0.1:9000
//!   access_key: $(AWS_ACCESS_KEY_ID)
//!   secret_key: ${AWS_SECRET_ACCESS_KEY}
//!   insecure: true
//! ```
//!
//! `$(VAR)` and `${VAR}` are replaced from the environment before parsing; an unset
//! variable is an error. Unknown fields are logged (tracing `warn`) and ignored.
//! [`ObjstoreConfig::build`] yields an `Arc<dyn ObjectStore>` whose `Display` is the
//! bucket's URL (`s3://bucket/prefix`, `file:///dir`), which errors quote.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

use crate::block::UploadOptions;
use crate::counting::{CountingStore, RequestStats};
use crate::{Error, Result};

/// Where `make run` keeps its bucket when no objstore config is given.
pub const DEFAULT_LOCAL_BUCKET_DIR: &str = "data/bucket";

/// Default multipart part size (Thanos uses 64 MiB; parts are buffered in memory,
/// up to [`UploadOptions::part_concurrency`] at once, so we use less).
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;

/// A parsed objstore configuration.
#[derive(Debug, Clone)]
pub struct ObjstoreConfig {
    pub backend: Backend,
    /// Key prefix inside the bucket (no leading or trailing `/`; empty = none): the
    /// top-level `prefix` joined with the provider config's `prefix`.
    pub prefix: String,
    /// Request-level retries for network stores (not part of the YAML).
    pub retry: RetryConfig,
}

#[derive(Debug, Clone)]
pub enum Backend {
    S3(Box<S3Config>),
    Filesystem(FilesystemConfig),
}

/// A string whose value is never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// Thanos's `bucket_lookup_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BucketLookupType {
    /// Virtual-hosted style for AWS endpoints and DNS-compatible bucket names, path
    /// style otherwise (so a custom endpoint such as MinIO or SeaweedFS gets paths).
    #[default]
    Auto,
    VirtualHosted,
    Path,
}

impl<'de> Deserialize<'de> for BucketLookupType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        match s.as_str() {
            "" | "auto" => Ok(BucketLookupType::Auto),
            "virtual-hosted" | "virtual-host" => Ok(BucketLookupType::VirtualHosted),
            "path" => Ok(BucketLookupType::Path),
            other => Err(serde::de::Error::custom(format!(
                "unsupported bucket lookup type: {other} (want auto, virtual-hosted or path)"
            ))),
        }
    }
}

/// `type: S3` config, field names as Thanos's `providers/s3` Config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct S3Config {
    #[serde(deserialize_with = "nullable")]
    pub bucket: String,
    #[serde(deserialize_with = "nullable")]
    pub endpoint: String,
    #[serde(deserialize_with = "nullable")]
    pub region: String,
    #[serde(deserialize_with = "nullable")]
    pub access_key: String,
    #[serde(deserialize_with = "nullable")]
    pub secret_key: Secret,
    #[serde(deserialize_with = "nullable")]
    pub session_token: Secret,
    #[serde(deserialize_with = "nullable")]
    pub insecure: bool,
    /// Accepted and ignored: requests are always signed with SigV4.
    #[serde(deserialize_with = "nullable")]
    pub signature_version2: bool,
    /// Accepted; object_store never uses dual-stack endpoints on its own.
    #[serde(deserialize_with = "nullable")]
    pub disable_dualstack: bool,
    /// Use the AWS credential chain (env, web identity, ECS, EC2 metadata).
    #[serde(deserialize_with = "nullable")]
    pub aws_sdk_auth: bool,
    /// Accepted and ignored (logged when set).
    #[serde(deserialize_with = "nullable")]
    pub put_user_metadata: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub http_config: HttpConfig,
    /// Accepted and ignored.
    #[serde(deserialize_with = "nullable")]
    pub trace: Option<Value>,
    /// `v1` or `v2`; object_store always lists with ListObjectsV2.
    #[serde(deserialize_with = "nullable")]
    pub list_objects_version: String,
    #[serde(deserialize_with = "nullable")]
    pub bucket_lookup_type: BucketLookupType,
    /// Accepted and ignored: payloads are integrity-protected by SigV4's signed
    /// SHA-256 instead of Content-MD5.
    #[serde(deserialize_with = "nullable")]
    pub send_content_md5: Option<bool>,
    /// Upload every object with one PUT (memory then grows with the file size).
    #[serde(deserialize_with = "nullable")]
    pub disable_multipart: bool,
    /// Multipart part size in bytes; files smaller than this are one PUT.
    #[serde(deserialize_with = "nullable")]
    pub part_size: Option<u64>,
    #[serde(deserialize_with = "nullable")]
    pub sse_config: SseConfig,
    #[serde(deserialize_with = "nullable")]
    pub sts_endpoint: String,
    /// A key prefix (joined after the top-level `prefix`).
    #[serde(deserialize_with = "nullable")]
    pub prefix: String,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// Thanos's `http_config` (exthttp.HTTPConfig).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    #[serde(deserialize_with = "duration")]
    pub idle_conn_timeout: Option<Duration>,
    /// Used as the read timeout (time without any bytes from the server).
    #[serde(deserialize_with = "duration")]
    pub response_header_timeout: Option<Duration>,
    #[serde(deserialize_with = "nullable")]
    pub insecure_skip_verify: bool,
    #[serde(deserialize_with = "duration")]
    pub tls_handshake_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub expect_continue_timeout: Option<Duration>,
    #[serde(deserialize_with = "nullable")]
    pub max_idle_conns: Option<usize>,
    #[serde(deserialize_with = "nullable")]
    pub max_idle_conns_per_host: Option<usize>,
    #[serde(deserialize_with = "nullable")]
    pub max_conns_per_host: Option<usize>,
    #[serde(deserialize_with = "nullable")]
    pub tls_config: TlsConfig,
    #[serde(deserialize_with = "nullable")]
    pub force_attempt_http2: bool,
    #[serde(deserialize_with = "nullable")]
    pub disable_compression: bool,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    #[serde(deserialize_with = "nullable")]
    pub ca_file: String,
    #[serde(deserialize_with = "nullable")]
    pub cert_file: String,
    #[serde(deserialize_with = "nullable")]
    pub key_file: String,
    #[serde(deserialize_with = "nullable")]
    pub server_name: String,
    #[serde(deserialize_with = "nullable")]
    pub insecure_skip_verify: bool,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// Server-side encryption: `SSE-S3`, `SSE-KMS` (kms_key_id) or `SSE-C`
/// (encryption_key = path of a file holding the 32-byte key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SseConfig {
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    #[serde(deserialize_with = "nullable")]
    pub kms_key_id: String,
    #[serde(deserialize_with = "nullable")]
    pub kms_encryption_context: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub encryption_key: String,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// `type: FILESYSTEM` config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FilesystemConfig {
    #[serde(deserialize_with = "nullable")]
    pub directory: String,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// `null` (an empty YAML value) reads as the type's default, as in Go's yaml.
fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Duration>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(secs) => Ok(Some(Duration::from_secs(secs))),
            None => Err(serde::de::Error::custom(format!("invalid duration {n}"))),
        },
        Some(other) => Err(serde::de::Error::custom(format!(
            "invalid duration {other:?}"
        ))),
    }
}

/// Parses a Prometheus duration: `1h30m`, `90s`, `500ms`, `2d`, `1w`, `1y`, `0`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    model::parse_duration_ms(s)
        .map(|ms| Duration::from_millis(ms as u64))
        .ok_or_else(|| format!("invalid duration {s:?} (units y w d h m s ms, largest first)"))
}

/// Replaces `$(VAR)` and `${VAR}` (VAR of letters, digits and `_`) with `lookup(VAR)`;
/// an unset variable is an error. Other `$` are kept as they are.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let close = match after.chars().next() {
            Some('(') => Some(')'),
            Some('{') => Some('}'),
            _ => None,
        };
        if let Some(close) = close {
            if let Some(end) = after[1..].find(close) {
                let name = &after[1..1 + end];
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            return Err(Error::Config(format!(
                                "environment variable {name:?} referenced in the objstore config is not set"
                            )))
                        }
                    }
                    rest = &after[1 + end + 1..];
                    continue;
                }
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    prefix: String,
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

fn warn_unknown(section: &str, unknown: &BTreeMap<String, Value>) {
    for k in unknown.keys() {
        tracing::warn!(field = %k, section, "unknown objstore config field ignored");
    }
}

fn join_prefix(a: &str, b: &str) -> String {
    [a, b]
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

impl Default for ObjstoreConfig {
    /// A FILESYSTEM bucket at [`DEFAULT_LOCAL_BUCKET_DIR`] (for `make run`).
    fn default() -> Self {
        ObjstoreConfig::filesystem(DEFAULT_LOCAL_BUCKET_DIR)
    }
}

impl ObjstoreConfig {
    /// A FILESYSTEM bucket at `dir`.
    pub fn filesystem(dir: impl AsRef<FsPath>) -> Self {
        ObjstoreConfig {
            backend: Backend::Filesystem(FilesystemConfig {
                directory: dir.as_ref().to_string_lossy().into_owned(),
                unknown: BTreeMap::new(),
            }),
            prefix: String::new(),
            retry: crate::retry::default_request_retry(),
        }
    }

    /// Parses objstore YAML, expanding `$(VAR)`/`${VAR}` from the process environment.
    pub fn parse(yaml: &str) -> Result<Self> {
        Self::parse_with_env(yaml, |k| std::env::var(k).ok())
    }

    /// Parses objstore YAML with variables looked up by `env`.
    pub fn parse_with_env(yaml: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let text = expand_env(yaml, env)?;
        let raw: RawConfig = serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::Config(format!("parsing objstore YAML: {e}")))?;
        warn_unknown("top level", &raw.unknown);
        let config = raw.config.unwrap_or(Value::Null);
        let config = if config.is_null() {
            Value::Mapping(Default::default())
        } else {
            config
        };
        let kind = raw.kind.trim().to_ascii_uppercase();
        let (backend, inner_prefix) = match kind.as_str() {
            "S3" => {
                let c: S3Config = serde_yaml_ng::from_value(config)
                    .map_err(|e| Error::Config(format!("type S3: {e}")))?;
                warn_unknown("config", &c.unknown);
                warn_unknown("config.http_config", &c.http_config.unknown);
                warn_unknown(
                    "config.http_config.tls_config",
                    &c.http_config.tls_config.unknown,
                );
                warn_unknown("config.sse_config", &c.sse_config.unknown);
                c.validate()?;
                let p = c.prefix.clone();
                (Backend::S3(Box::new(c)), p)
            }
            "FILESYSTEM" => {
                let c: FilesystemConfig = serde_yaml_ng::from_value(config)
                    .map_err(|e| Error::Config(format!("type FILESYSTEM: {e}")))?;
                warn_unknown("config", &c.unknown);
                if c.directory.trim().is_empty() {
                    return Err(Error::Config("type FILESYSTEM: missing `directory`".into()));
                }
                (Backend::Filesystem(c), String::new())
            }
            "" => return Err(Error::Config("missing `type` (S3 or FILESYSTEM)".into())),
            _ => {
                return Err(Error::Config(format!(
                    "bucket type {:?} is not supported (supported: S3, FILESYSTEM)",
                    raw.kind
                )))
            }
        };
        Ok(ObjstoreConfig {
            backend,
            prefix: join_prefix(&raw.prefix, &inner_prefix),
            retry: crate::retry::default_request_retry(),
        })
    }

    /// Reads and parses an objstore YAML file.
    pub fn from_file(path: impl AsRef<FsPath>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::local("reading objstore config", path, e))?;
        Self::parse(&text)
    }

    /// The bucket as a URL: `s3://bucket/prefix` or `file:///dir/prefix`.
    pub fn describe(&self) -> String {
        let base = match &self.backend {
            Backend::S3(c) => format!("s3://{}", c.bucket),
            Backend::Filesystem(c) => {
                let p = PathBuf::from(&c.directory);
                let abs = std::path::absolute(&p).unwrap_or(p);
                format!("file://{}", abs.display().to_string().trim_end_matches('/'))
            }
        };
        if self.prefix.is_empty() {
            base
        } else {
            format!("{base}/{}", self.prefix)
        }
    }

    /// How [`crate::block::upload_block_with`] should upload to this bucket (part size,
    /// multipart on or off) per the config.
    pub fn upload_options(&self) -> UploadOptions {
        let mut o = UploadOptions::default();
        if let Backend::S3(c) = &self.backend {
            if let Some(p) = c.part_size.filter(|&p| p > 0) {
                o.part_size = p;
            }
            o.multipart = !c.disable_multipart;
        }
        o
    }

    /// Builds the store (prefix applied). Its `Display` is [`Self::describe`].
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(self.build_with_stats()?.0)
    }

    /// Builds the store together with its request counters.
    pub fn build_with_stats(&self) -> Result<(Arc<dyn ObjectStore>, Arc<RequestStats>)> {
        let base: Arc<dyn ObjectStore> = match &self.backend {
            Backend::S3(c) => c.build(&self.retry)?,
            Backend::Filesystem(c) => {
                let dir = PathBuf::from(&c.directory);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::local("creating filesystem bucket directory", &dir, e))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
                    Error::Config(format!("filesystem bucket {}: {e}", dir.display()))
                })?;
                Arc::new(fs.with_automatic_cleanup(true))
            }
        };
        let store: Arc<dyn ObjectStore> = if self.prefix.is_empty() {
            base
        } else {
            let p = Path::parse(&self.prefix)
                .map_err(|e| Error::Config(format!("invalid prefix {:?}: {e}", self.prefix)))?;
            Arc::new(PrefixStore::new(base, p))
        };
        let counting = CountingStore::with_name(store, self.describe());
        let stats = counting.stats();
        Ok((Arc::new(counting), stats))
    }
}

fn is_aws_host(host: &str) -> bool {
    let h = host.split(':').next().unwrap_or(host);
    h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn")
}

fn region_from_aws_host(host: &str) -> Option<String> {
    let h = host.split(':').next().unwrap_or(host);
    let h = h
        .strip_suffix(".amazonaws.com")
        .or_else(|| h.strip_suffix(".amazonaws.com.cn"))?;
    let h = h.strip_prefix("s3.dualstack.").unwrap_or(h);
    let r = h.strip_prefix("s3.").or_else(|| h.strip_prefix("s3-"))?;
    (!r.is_empty() && !r.contains('.') && r != "external-1").then(|| r.to_string())
}

fn dns_compatible(bucket: &str) -> bool {
    bucket.len() >= 3
        && bucket.len() <= 63
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !bucket.starts_with('-')
        && !bucket.ends_with('-')
}

impl S3Config {
    fn validate(&self) -> Result<()> {
        let err = |m: &str| Err(Error::Config(format!("type S3: {m}")));
        if self.bucket.trim().is_empty() {
            return err("missing `bucket`");
        }
        if self.aws_sdk_auth && !self.access_key.is_empty() {
            return err("aws_sdk_auth and access_key are mutually exclusive");
        }
        if self.access_key.is_empty() && !self.secret_key.is_empty() {
            return err("secret_key is set but access_key is not; set both, or neither to use the AWS credential chain");
        }
        if !self.access_key.is_empty() && self.secret_key.is_empty() {
            return err("access_key is set but secret_key is not; set both, or neither to use the AWS credential chain");
        }
        match self.list_objects_version.as_str() {
            "" | "v1" | "v2" => {}
            v => {
                return err(&format!(
                    "unsupported list_objects_version {v:?} (supported: v1, v2)"
                ))
            }
        }
        match self.sse_config.kind.as_str() {
            "" | "SSE-S3" => {}
            "SSE-KMS" if self.sse_config.kms_key_id.is_empty() => {
                return err("kms_key_id must be set if sse_config.type is SSE-KMS")
            }
            "SSE-KMS" => {}
            "SSE-C" if self.sse_config.encryption_key.is_empty() => {
                return err("encryption_key must be set if sse_config.type is SSE-C")
            }
            "SSE-C" => {}
            t => {
                return err(&format!(
                    "unsupported sse_config.type {t:?} (supported: SSE-S3, SSE-KMS, SSE-C)"
                ))
            }
        }
        Ok(())
    }

    /// The endpoint as (scheme, host[:port][/path]); None for AWS's default endpoint.
    fn endpoint_parts(&self) -> Option<(String, String)> {
        let e = self.endpoint.trim().trim_end_matches('/');
        if e.is_empty() {
            return None;
        }
        Some(match e.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest.to_string()),
            None => (
                if self.insecure { "http" } else { "https" }.to_string(),
                e.to_string(),
            ),
        })
    }

    fn virtual_hosted(&self) -> bool {
        match self.bucket_lookup_type {
            BucketLookupType::Path => false,
            BucketLookupType::VirtualHosted => true,
            BucketLookupType::Auto => {
                let aws = match self.endpoint_parts() {
                    None => true,
                    Some((_, host)) => is_aws_host(&host),
                };
                aws && dns_compatible(&self.bucket)
            }
        }
    }

    fn client_options(&self) -> Result<ClientOptions> {
        let h = &self.http_config;
        let scheme_http = self.endpoint_parts().is_some_and(|(s, _)| s == "http");
        let mut o = ClientOptions::new()
            .with_allow_http(scheme_http)
            .with_allow_invalid_certificates(
                h.insecure_skip_verify || h.tls_config.insecure_skip_verify,
            )
            // Whole-object transfers can take long; stalls are caught by the read timeout.
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10))
            .with_pool_idle_timeout(h.idle_conn_timeout.unwrap_or(Duration::from_secs(90)))
            .with_pool_max_idle_per_host(h.max_idle_conns_per_host.unwrap_or(100));
        match h.response_header_timeout {
            Some(d) if d.is_zero() => {}
            Some(d) => o = o.with_read_timeout(d),
            None => o = o.with_read_timeout(Duration::from_secs(120)),
        }
        if !h.tls_config.ca_file.is_empty() {
            let pem = std::fs::read(&h.tls_config.ca_file).map_err(|e| {
                Error::local("reading tls_config.ca_file", &h.tls_config.ca_file, e)
            })?;
            let cert = object_store::Certificate::from_pem(&pem).map_err(|e| {
                Error::Config(format!("tls_config.ca_file {}: {e}", h.tls_config.ca_file))
            })?;
            o = o.with_root_certificate(cert);
        }
        if !h.tls_config.cert_file.is_empty() || !h.tls_config.key_file.is_empty() {
            tracing::warn!("http_config.tls_config client certificates are not supported; ignored");
        }
        Ok(o)
    }

    fn build(&self, retry: &RetryConfig) -> Result<Arc<dyn ObjectStore>> {
        let bucket = self.bucket.trim();
        let cfg_err = |m: String| Error::Config(format!("S3 bucket {bucket}: {m}"));
        if self.signature_version2 {
            tracing::warn!("signature_version2 is not supported; requests are signed with SigV4");
        }
        if !self.put_user_metadata.is_empty() {
            tracing::warn!("put_user_metadata is not supported; ignored");
        }
        if self.list_objects_version == "v1" {
            tracing::warn!("list_objects_version v1 requested; ListObjectsV2 is used");
        }
        let static_keys = !self.access_key.is_empty();
        // Static keys: nothing from the environment (as Thanos). Otherwise the AWS
        // chain: AWS_* variables, web identity, ECS/EKS, EC2 instance metadata.
        let mut b = if static_keys {
            AmazonS3Builder::new()
                .with_access_key_id(&self.access_key)
                .with_secret_access_key(self.secret_key.expose())
        } else {
            AmazonS3Builder::from_env()
        };
        if static_keys && !self.session_token.is_empty() {
            b = b.with_token(self.session_token.expose());
        }
        b = b.with_bucket_name(bucket);

        let endpoint = self.endpoint_parts();
        let region = if !self.region.is_empty() {
            Some(self.region.clone())
        } else {
            endpoint.as_ref().and_then(|(_, h)| region_from_aws_host(h))
        };
        if let Some(r) = region {
            b = b.with_region(r);
        }
        let virtual_hosted = self.virtual_hosted();
        b = b.with_virtual_hosted_style_request(virtual_hosted);
        if let Some((scheme, host)) = &endpoint {
            let url = if virtual_hosted {
                format!("{scheme}://{bucket}.{host}")
            } else {
                format!("{scheme}://{host}")
            };
            b = b
                .with_endpoint(&url)
                .with_config(AmazonS3ConfigKey::S3Endpoint, &url);
        }
        if !self.sts_endpoint.is_empty() {
            b = b.with_config(AmazonS3ConfigKey::StsEndpoint, &self.sts_endpoint);
        }
        let sse = &self.sse_config;
        match sse.kind.as_str() {
            "SSE-S3" => {
                // object_store 0.14 does not export S3EncryptionConfigKey; go by name.
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|e: object_store::Error| cfg_err(e.to_string()))?;
                b = b.with_config(key, "AES256")
            }
            "SSE-KMS" => {
                if !sse.kms_encryption_context.is_empty() {
                    tracing::warn!("sse_config.kms_encryption_context is not supported; ignored");
                }
                b = b.with_sse_kms_encryption(&sse.kms_key_id);
            }
            "SSE-C" => {
                let key = std::fs::read(&sse.encryption_key).map_err(|e| {
                    Error::local("reading sse_config.encryption_key", &sse.encryption_key, e)
                })?;
                if key.len() != 32 {
                    return Err(cfg_err(format!(
                        "sse_config.encryption_key {} holds {} bytes, want 32",
                        sse.encryption_key,
                        key.len()
                    )));
                }
                b = b.with_ssec_encryption(base64(&key));
            }
            _ => {}
        }
        b = b
            .with_client_options(self.client_options()?)
            .with_retry(retry.clone());
        let s3 = b.build().map_err(|e| cfg_err(e.to_string()))?;
        Ok(Arc::new(s3))
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn s3(c: &ObjstoreConfig) -> &S3Config {
        match &c.backend {
            Backend::S3(s) => s,
            _ => panic!("not S3"),
        }
    }

    #[test]
    fn env_expansion() {
        let e = env(&[("A", "1"), ("B_2", "two")]);
        assert_eq!(expand_env("x$(A)y${B_2}z", &e).unwrap(), "x1ytwoz");
        assert_eq!(
            expand_env("$ $$ $x $( ) ${} $(A", &e).unwrap(),
            "$ $$ $x $( ) ${} $(A"
        );
        let err = expand_env("k: $(NOPE)", &e).unwrap_err().to_string();
        assert!(err.contains("NOPE") && err.contains("not set"), "{err}");
        assert!(expand_env("${NOPE}", &e).is_err());
    }

    #[test]
    fn parses_every_s3_field() {
        let yaml = r#"
type: s3
prefix: /top/
config:
  bucket: "thanos"
  endpoint: "minio:9000"
  region: eu-west-1
  access_key: $(KEY)
  secret_key: ${SECRET}
  session_token: TOKENVALUE456
  insecure: true
  signature_version2: false
  disable_dualstack: true
  aws_sdk_auth: false
  put_user_metadata:
    X-Amz-Storage-Class: STANDARD_IA
  http_config:
    idle_conn_timeout: 1m30s
    response_header_timeout: 2m
    insecure_skip_verify: true
    tls_handshake_timeout: 10s
    expect_continue_timeout: 1s
    max_idle_conns: 100
    max_idle_conns_per_host: 50
    max_conns_per_host: 0
    tls_config:
      ca_file: ""
      insecure_skip_verify: false
    disable_compression: false
  trace:
    enable: true
  list_objects_version: v2
  bucket_lookup_type: path
  send_content_md5: true
  disable_multipart: false
  part_size: 5242880
  sse_config:
    type: SSE-S3
  sts_endpoint: ""
  prefix: inner
"#;
        let c = ObjstoreConfig::parse_with_env(
            yaml,
            env(&[("KEY", "AK"), ("SECRET", "SECRETVALUE123")]),
        )
        .unwrap();
        let s = s3(&c);
        assert_eq!(s.bucket, "thanos");
        assert_eq!(s.access_key, "AK");
        assert_eq!(s.secret_key.expose(), "SECRETVALUE123");
        assert_eq!(s.session_token.expose(), "TOKENVALUE456");
        assert!(s.insecure && s.disable_dualstack && !s.aws_sdk_auth);
        assert_eq!(
            s.http_config.idle_conn_timeout,
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            s.http_config.response_header_timeout,
            Some(Duration::from_secs(120))
        );
        assert!(s.http_config.insecure_skip_verify);
        assert_eq!(s.http_config.max_idle_conns_per_host, Some(50));
        assert_eq!(s.bucket_lookup_type, BucketLookupType::Path);
        assert_eq!(s.part_size, Some(5 << 20));
        assert_eq!(s.sse_config.kind, "SSE-S3");
        assert!(s.unknown.is_empty() && s.http_config.unknown.is_empty());
        assert_eq!(c.prefix, "top/inner");
        assert_eq!(c.describe(), "s3://thanos/top/inner");
        assert_eq!(c.upload_options().part_size, 5 << 20);
        // Secrets stay out of Debug output.
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("SECRETVALUE123") && !dbg.contains("TOKENVALUE456"),
            "{dbg}"
        );
        let store = c.build().unwrap();
        assert_eq!(store.to_string(), "s3://thanos/top/inner");
    }

    #[test]
    fn type_is_case_insensitive_and_unknown_fields_are_tolerated() {
        for t in ["S3", "s3", "S3 "] {
            let y = format!("type: {t}\nfoo: 1\nconfig:\n  bucket: b\n  endpoint: e:1\n  access_key: a\n  secret_key: s\n  bogus_field: x\n");
            let c = ObjstoreConfig::parse_with_env(&y, env(&[])).unwrap();
            assert!(s3(&c).unknown.contains_key("bogus_field"));
        }
        for t in ["FILESYSTEM", "filesystem", "FileSystem"] {
            let y = format!("type: {t}\nconfig:\n  directory: /tmp/x\n");
            let c = ObjstoreConfig::parse_with_env(&y, env(&[])).unwrap();
            assert!(matches!(c.backend, Backend::Filesystem(ref f) if f.directory == "/tmp/x"));
            assert_eq!(c.describe(), "file:///tmp/x");
        }
    }

    #[test]
    fn errors_are_clear() {
        let e = |y: &str| {
            ObjstoreConfig::parse_with_env(y, env(&[]))
                .unwrap_err()
                .to_string()
        };
        assert!(e("type: S3\nconfig:\n  endpoint: x\n").contains("missing `bucket`"));
        assert!(e("type: S3\n").contains("missing `bucket`"));
        assert!(e("type: GCS\nconfig: {}\n").contains("not supported"));
        assert!(e("config:\n  bucket: b\n").contains("missing `type`"));
        assert!(e("type: [\n").contains("parsing objstore YAML"));
        assert!(e("type: FILESYSTEM\nconfig: {}\n").contains("directory"));
        assert!(e("type: S3\nconfig:\n  bucket: b\n  access_key: a\n").contains("secret_key"));
        assert!(e("type: S3\nconfig:\n  bucket: b\n  secret_key: a\n").contains("access_key"));
        assert!(e("type: S3\nconfig:\n  bucket: b\n  aws_sdk_auth: true\n  access_key: a\n  secret_key: s\n")
            .contains("mutually exclusive"));
        assert!(e("type: S3\nconfig:\n  bucket: b\n  insecure: maybe\n").contains("type S3"));
        assert!(e("type: S3\nconfig:\n  bucket: b\n  list_objects_version: v3\n").contains("v3"));
        assert!(e("type: S3\nconfig:\n  bucket: b\n  bucket_lookup_type: dns\n").contains("dns"));
        assert!(
            e("type: S3\nconfig:\n  bucket: b\n  sse_config:\n    type: SSE-KMS\n")
                .contains("kms_key_id")
        );
        assert!(
            e("type: S3\nconfig:\n  bucket: b\n  sse_config:\n    type: AES\n").contains("AES")
        );
        assert!(
            e("type: S3\nconfig:\n  bucket: b\n  http_config:\n    idle_conn_timeout: soon\n")
                .contains("soon")
        );
        assert!(e("type: S3\nconfig:\n  bucket: $(UNSET_VAR_X)\n").contains("UNSET_VAR_X"));
    }

    #[test]
    fn null_fields_read_as_defaults() {
        let y = "type: S3\nconfig:\n  bucket: b\n  endpoint: h:1\n  access_key: a\n  secret_key: s\n  session_token:\n  http_config:\n  sse_config:\n  part_size:\n";
        let c = ObjstoreConfig::parse_with_env(y, env(&[])).unwrap();
        assert!(s3(&c).session_token.is_empty());
        assert_eq!(c.upload_options().part_size, DEFAULT_PART_SIZE);
    }

    #[test]
    fn endpoint_scheme_and_lookup_style() {
        let parse = |extra: &str| {
            let y = format!(
                "type: S3\nconfig:\n  bucket: my-bucket\n  access_key: a\n  secret_key: s\n{extra}"
            );
            s3(&ObjstoreConfig::parse_with_env(&y, env(&[])).unwrap()).clone()
        };
        let c = parse("  endpoint: 127.0.0.1:9000\n  insecure: true\n");
        assert_eq!(
            c.endpoint_parts().unwrap(),
            ("http".into(), "127.0.0.1:9000".into())
        );
        assert!(!c.virtual_hosted(), "custom endpoints use path style");
        let c = parse("  endpoint: minio.local:9000\n");
        assert_eq!(c.endpoint_parts().unwrap().0, "https");
        let c = parse("  endpoint: http://minio.local:9000/\n");
        assert_eq!(
            c.endpoint_parts().unwrap(),
            ("http".into(), "minio.local:9000".into())
        );
        let c = parse("  endpoint: s3.eu-west-1.amazonaws.com\n");
        assert!(c.virtual_hosted());
        assert_eq!(
            region_from_aws_host("s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_aws_host("s3-us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(region_from_aws_host("s3.amazonaws.com"), None);
        let c = parse("  endpoint: s3.amazonaws.com\n  bucket_lookup_type: path\n");
        assert!(!c.virtual_hosted());
        let c = parse("  endpoint: minio:9000\n  bucket_lookup_type: virtual-hosted\n");
        assert!(c.virtual_hosted());
        let c = parse("");
        assert!(c.endpoint_parts().is_none() && c.virtual_hosted());
        // all of these build without network access
        for extra in [
            "  endpoint: 127.0.0.1:9000\n  insecure: true\n",
            "  endpoint: s3.eu-west-1.amazonaws.com\n",
            "",
            "  endpoint: minio:9000\n  bucket_lookup_type: virtual-hosted\n",
        ] {
            let y = format!(
                "type: S3\nconfig:\n  bucket: my-bucket\n  access_key: a\n  secret_key: s\n{extra}"
            );
            ObjstoreConfig::parse_with_env(&y, env(&[]))
                .unwrap()
                .build()
                .unwrap();
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("99999999999999999999y").is_err());
    }

    #[test]
    fn base64_encodes() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn from_file_and_default() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("objstore.yml");
        let bucket_dir = d.path().join("bkt");
        std::fs::write(
            &p,
            format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: p\n",
                bucket_dir.display()
            ),
        )
        .unwrap();
        let c = ObjstoreConfig::from_file(&p).unwrap();
        assert_eq!(c.prefix, "p");
        let store = c.build().unwrap();
        assert!(bucket_dir.is_dir());
        assert!(store.to_string().ends_with("/bkt/p"));
        let missing = ObjstoreConfig::from_file(d.path().join("nope.yml")).unwrap_err();
        assert!(missing.to_string().contains("nope.yml"));
        let def = ObjstoreConfig::default();
        assert!(
            matches!(def.backend, Backend::Filesystem(ref f) if f.directory == DEFAULT_LOCAL_BUCKET_DIR)
        );
    }
}
