//! A small client for the Prometheus next to the sidecar: its configuration
//! (external labels), lowest stored timestamp, remote read (`/api/v1/read`) and
//! the series/labels HTTP API.

use std::collections::BTreeMap;
use std::time::Duration;

use model::{Labels, Matcher};
use prost::Message;

use crate::{Error, Result};

/// Generated remote-read messages (package `prometheus`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod prompb {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Content type of a streamed remote-read response.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";
/// Largest decoded remote-read response or frame accepted.
pub const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// One series of a remote-read answer, with Prometheus's chunk encodings
/// (XOR = 1, histogram = 2, float histogram = 3).
#[derive(Debug, Clone, PartialEq)]
pub enum ReadSeries {
    /// From a streamed response: encoded chunks.
    Chunks(Labels, Vec<prompb::Chunk>),
    /// From a sampled response: (t, v) pairs in time order.
    Samples(Labels, Vec<(i64, f64)>),
}

/// Prometheus's HTTP endpoints.
#[derive(Debug, Clone)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
}

impl PromClient {
    /// A client for the Prometheus at `url` (e.g. `http://localhost:9090`).
    pub fn new(url: &str) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "--prometheus.url {url:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(PromClient { base, http })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::prom(&self.base, reason)
    }

    async fn get_json(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .query(query)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.err(format!("GET {path}: {}", describe(&e))))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.err(format!("GET {path}: reading body: {}", describe(&e))))?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            self.err(format!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })?;
        if v["status"] != "success" {
            return Err(self.err(format!(
                "GET {path}: HTTP {status}: {} {}",
                v["errorType"].as_str().unwrap_or(""),
                v["error"].as_str().unwrap_or("")
            )));
        }
        Ok(v["data"].clone())
    }

    /// The external labels from Prometheus's loaded configuration
    /// (`/api/v1/status/config`, `global.external_labels`).
    pub async fn external_labels(&self) -> Result<BTreeMap<String, String>> {
        let data = self
            .get_json("/api/v1/status/config", &[], Duration::from_secs(10))
            .await?;
        let yaml = data["yaml"]
            .as_str()
            .ok_or_else(|| self.err("/api/v1/status/config: no yaml in the answer"))?;
        parse_external_labels(yaml).map_err(|e| self.err(format!("configuration YAML: {e}")))
    }

    /// The lowest timestamp Prometheus holds (ms), from its own
    /// `prometheus_tsdb_lowest_timestamp` metric.
    pub async fn lowest_timestamp(&self) -> Result<i64> {
        let url = format!("{}/metrics", self.base);
        let text = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| self.err(format!("GET /metrics: {}", describe(&e))))?
            .text()
            .await
            .map_err(|e| self.err(format!("GET /metrics: {}", describe(&e))))?;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("prometheus_tsdb_lowest_timestamp ") {
                let f: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| self.err(format!("bad prometheus_tsdb_lowest_timestamp {v:?}")))?;
                return Ok(f as i64);
            }
        }
        Err(self.err("/metrics has no prometheus_tsdb_lowest_timestamp"))
    }

    /// Remote read of one query, asking for streamed XOR chunks (falling back to
    /// samples when Prometheus answers with those).
    pub async fn remote_read(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        hints: Option<prompb::ReadHints>,
    ) -> Result<Vec<ReadSeries>> {
        let req = prompb::ReadRequest {
            queries: vec![prompb::Query {
                start_timestamp_ms: start,
                end_timestamp_ms: end,
                matchers: matchers.iter().map(matcher_to_prompb).collect(),
                hints,
            }],
            accepted_response_types: vec![
                prompb::read_request::ResponseType::StreamedXorChunks as i32,
                prompb::read_request::ResponseType::Samples as i32,
            ],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .map_err(|e| self.err(format!("snappy: {e}")))?;
        let resp = self
            .http
            .post(format!("{}/api/v1/read", self.base))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .map_err(|e| self.err(format!("remote read: {}", describe(&e))))?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.err(format!("remote read: reading body: {}", describe(&e))))?;
        if !status.is_success() {
            return Err(self.err(format!(
                "remote read: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).trim()
            )));
        }
        if ctype.starts_with("application/x-streamed-protobuf") {
            decode_streamed(&bytes).map_err(|e| self.err(format!("remote read: {e}")))
        } else {
            decode_sampled(&bytes).map_err(|e| self.err(format!("remote read: {e}")))
        }
    }

    /// `/api/v1/series` for one selector.
    pub async fn series(&self, matchers: &[Matcher], start: i64, end: i64) -> Result<Vec<Labels>> {
        let mut q = vec![("match[]", selector(matchers))];
        push_range(&mut q, start, end);
        let data = self
            .get_json("/api/v1/series", &q, Duration::from_secs(120))
            .await?;
        let arr = data.as_array().cloned().unwrap_or_default();
        Ok(arr
            .iter()
            .filter_map(|o| o.as_object())
            .map(|o| {
                Labels::from_pairs(
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())),
                )
            })
            .collect())
    }

    /// `/api/v1/labels`.
    pub async fn label_names(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>> {
        let mut q = Vec::new();
        if !matchers.is_empty() {
            q.push(("match[]", selector(matchers)));
        }
        push_range(&mut q, start, end);
        let data = self
            .get_json("/api/v1/labels", &q, Duration::from_secs(120))
            .await?;
        Ok(strings(&data))
    }

    /// `/api/v1/label/<name>/values`.
    pub async fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>> {
        let mut q = Vec::new();
        if !matchers.is_empty() {
            q.push(("match[]", selector(matchers)));
        }
        push_range(&mut q, start, end);
        let path = format!("/api/v1/label/{}/values", url_path_escape(name));
        let data = self.get_json(&path, &q, Duration::from_secs(120)).await?;
        Ok(strings(&data))
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn url_path_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Times beyond ±10^15 ms (about ±31,000 years) mean "unbounded" (queriers send
/// Go's min/max int64): left out, Prometheus's defaults apply.
const UNBOUNDED_MS: i64 = 1_000_000_000_000_000;

fn push_range(q: &mut Vec<(&'static str, String)>, start: i64, end: i64) {
    if start > -UNBOUNDED_MS {
        q.push(("start", ms_to_seconds(start)));
    }
    if end < UNBOUNDED_MS {
        q.push(("end", ms_to_seconds(end)));
    }
}

/// `1500` -> `"1.500"`, `-1` -> `"-0.001"`.
pub fn ms_to_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// A PromQL selector for `matchers`: `{a="b",c=~"d"}`. No matchers select every
/// series with a name.
pub fn selector(matchers: &[Matcher]) -> String {
    if matchers.is_empty() {
        return "{__name__=~\".+\"}".to_string();
    }
    let parts: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
    format!("{{{}}}", parts.join(","))
}

fn matcher_to_prompb(m: &Matcher) -> prompb::LabelMatcher {
    use model::MatchType as T;
    use prompb::label_matcher::Type;
    let t = match m.kind() {
        T::Equal => Type::Eq,
        T::NotEqual => Type::Neq,
        T::Regex => Type::Re,
        T::NotRegex => Type::Nre,
    };
    prompb::LabelMatcher {
        r#type: t as i32,
        name: m.name().to_string(),
        value: m.value().to_string(),
    }
}

fn labels_from_prompb(ls: Vec<prompb::Label>) -> Labels {
    Labels::from_pairs(ls.into_iter().map(|l| (l.name, l.value)))
}

/// Decodes a streamed remote-read body: frames of `uvarint(len)`,
/// big-endian CRC32-Castagnoli of the data, then `len` bytes of a
/// `ChunkedReadResponse`. A series split over several frames comes back as
/// consecutive entries with the same labels.
pub fn decode_streamed(mut b: &[u8]) -> std::result::Result<Vec<ReadSeries>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (len, n) = uvarint(b).ok_or("truncated frame length")?;
        b = &b[n..];
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| format!("frame of {len} bytes is too large"))?;
        if b.len() < 4 + len {
            return Err(format!(
                "truncated frame: {} bytes of {}",
                b.len().saturating_sub(4),
                len
            ));
        }
        let want = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let data = &b[4..4 + len];
        let got = crc32c::crc32c(data);
        if got != want {
            return Err(format!("frame checksum mismatch: {got:08x} != {want:08x}"));
        }
        let msg =
            prompb::ChunkedReadResponse::decode(data).map_err(|e| format!("bad frame: {e}"))?;
        for s in msg.chunked_series {
            out.push(ReadSeries::Chunks(labels_from_prompb(s.labels), s.chunks));
        }
        b = &b[4 + len..];
    }
    Ok(out)
}

/// Decodes a sampled (snappy `ReadResponse`) remote-read body.
pub fn decode_sampled(b: &[u8]) -> std::result::Result<Vec<ReadSeries>, String> {
    let n = snap::raw::decompress_len(b).map_err(|e| format!("snappy: {e}"))?;
    if n > MAX_RESPONSE_BYTES {
        return Err(format!("response of {n} bytes is too large"));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(b)
        .map_err(|e| format!("snappy: {e}"))?;
    let resp =
        prompb::ReadResponse::decode(raw.as_slice()).map_err(|e| format!("bad response: {e}"))?;
    Ok(resp
        .results
        .into_iter()
        .flat_map(|r| r.timeseries)
        .map(|ts| {
            ReadSeries::Samples(
                labels_from_prompb(ts.labels),
                ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
            )
        })
        .collect())
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// `global.external_labels` of a Prometheus configuration.
pub fn parse_external_labels(yaml: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    if let Some(m) = v
        .get("global")
        .and_then(|g| g.get("external_labels"))
        .and_then(|e| e.as_mapping())
    {
        for (k, v) in m {
            let k = k.as_str().ok_or("external label name is not a string")?;
            let v = match v {
                serde_yaml_ng::Value::String(s) => s.clone(),
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                serde_yaml_ng::Value::Bool(b) => b.to_string(),
                _ => return Err(format!("external label {k} has a non-string value")),
            };
            out.insert(k.to_string(), v);
        }
    }
    Ok(out)
}

/// A reqwest error with its causes (e.g. "connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &prompb::ChunkedReadResponse) -> Vec<u8> {
        let data = msg.encode_to_vec();
        let mut out = Vec::new();
        let mut n = data.len() as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(&crc32c::crc32c(&data).to_be_bytes());
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn streamed_frames_decode_and_checksums_are_checked() {
        let msg = prompb::ChunkedReadResponse {
            chunked_series: vec![prompb::ChunkedSeries {
                labels: vec![prompb::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                chunks: vec![prompb::Chunk {
                    min_time_ms: 1,
                    max_time_ms: 2,
                    r#type: 1,
                    data: vec![0, 1, 2],
                }],
            }],
            query_index: 0,
        };
        let mut b = frame(&msg);
        b.extend(frame(&msg));
        let s = decode_streamed(&b).unwrap();
        assert_eq!(s.len(), 2);
        let ReadSeries::Chunks(l, c) = &s[0] else {
            panic!()
        };
        assert_eq!(l.get("__name__"), Some("up"));
        assert_eq!(c[0].data, vec![0, 1, 2]);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(decode_streamed(&b).unwrap_err().contains("checksum"));
        assert!(decode_streamed(&b[..3]).is_err());
    }

    #[test]
    fn sampled_response_decodes() {
        let resp = prompb::ReadResponse {
            results: vec![prompb::QueryResult {
                timeseries: vec![prompb::TimeSeries {
                    labels: vec![prompb::Label {
                        name: "a".into(),
                        value: "b".into(),
                    }],
                    samples: vec![prompb::Sample {
                        value: 1.5,
                        timestamp: 10,
                    }],
                }],
            }],
        };
        let b = snap::raw::Encoder::new()
            .compress_vec(&resp.encode_to_vec())
            .unwrap();
        let s = decode_sampled(&b).unwrap();
        assert_eq!(
            s,
            vec![ReadSeries::Samples(
                Labels::from_pairs([("a", "b")]),
                vec![(10, 1.5)]
            )]
        );
        assert!(decode_sampled(b"garbage").is_err());
    }

    #[test]
    fn external_labels_and_selectors() {
        let y = "global:\n  scrape_interval: 15s\n  external_labels:\n    cluster: eu\n    replica: 0\nscrape_configs: []\n";
        let l = parse_external_labels(y).unwrap();
        assert_eq!(l["cluster"], "eu");
        assert_eq!(l["replica"], "0");
        assert!(parse_external_labels("global: {}\n").unwrap().is_empty());
        assert_eq!(ms_to_seconds(1500), "1.500");
        assert_eq!(ms_to_seconds(-1), "-0.001");
        let m = vec![
            Matcher::equal("__name__", "up"),
            Matcher::new(model::MatchType::Regex, "job", "a\"b|c").unwrap(),
        ];
        assert_eq!(selector(&m), "{__name__=\"up\",job=~\"a\\\"b|c\"}");
    }
}
