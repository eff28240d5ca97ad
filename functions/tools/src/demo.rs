//! Realistic demo data, deterministic: the history `make run` backfills, and input
//! for tests and benchmarks. A fleet of API servers and nodes with counters (with
//! occasional resets on restarts), gauges, a classic histogram and `up`, sampled
//! every `interval` with a little scrape jitter.

use std::io::Write;
use std::path::Path;

use model::Labels;
use tsdb::block::BlockWriter;
use tsdb::meta::BlockMeta;

use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// First sample time, ms.
    pub start: i64,
    /// End (exclusive), ms.
    pub end: i64,
    /// Scrape interval, ms.
    pub interval: i64,
    /// Number of API instances (each adds about 40 series).
    pub instances: usize,
}

const HANDLERS: [&str; 4] = ["/api/orders", "/api/users", "/api/search", "/healthz"];
const CODES: [&str; 2] = ["200", "500"];
const LE: [&str; 6] = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
const MODES: [&str; 3] = ["user", "system", "idle"];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Requests { handler: usize, code: usize },
    Bucket { handler: usize, le: usize },
    HistCount { handler: usize },
    HistSum { handler: usize },
    Cpu { mode: usize },
    Memory,
    Up,
}

/// One generated series: its labels and how its values evolve.
#[derive(Debug, Clone)]
pub struct DemoSeries {
    pub labels: Labels,
    kind: Kind,
    instance: usize,
}

/// The series of a demo fleet, sorted by labels.
pub fn series(spec: &DemoSpec) -> Vec<DemoSeries> {
    let mut out = Vec::new();
    for i in 0..spec.instances {
        let inst = format!("api-{i}:8080");
        let base = |name: &str| {
            vec![
                ("__name__", name.to_string()),
                ("job", "api".to_string()),
                ("instance", inst.clone()),
            ]
        };
        let mut push = |mut pairs: Vec<(&str, String)>, extra: &[(&'static str, String)], kind| {
            pairs.extend(extra.iter().cloned());
            out.push(DemoSeries {
                labels: Labels::from_pairs(pairs),
                kind,
                instance: i,
            });
        };
        for (h, handler) in HANDLERS.iter().enumerate() {
            for (c, code) in CODES.iter().enumerate() {
                push(
                    base("http_requests_total"),
                    &[("handler", handler.to_string()), ("code", code.to_string())],
                    Kind::Requests {
                        handler: h,
                        code: c,
                    },
                );
            }
            for (l, le) in LE.iter().enumerate() {
                push(
                    base("http_request_duration_seconds_bucket"),
                    &[("handler", handler.to_string()), ("le", le.to_string())],
                    Kind::Bucket { handler: h, le: l },
                );
            }
            push(
                base("http_request_duration_seconds_count"),
                &[("handler", handler.to_string())],
                Kind::HistCount { handler: h },
            );
            push(
                base("http_request_duration_seconds_sum"),
                &[("handler", handler.to_string())],
                Kind::HistSum { handler: h },
            );
        }
        for (m, mode) in MODES.iter().enumerate() {
            push(
                base("node_cpu_seconds_total"),
                &[("mode", mode.to_string())],
                Kind::Cpu { mode: m },
            );
        }
        push(base("node_memory_available_bytes"), &[], Kind::Memory);
        push(base("up"), &[], Kind::Up);
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// A deterministic hash of a few integers to [0, 1).
fn noise(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Requests an instance served between its last restart and `t`: the integral of
/// a rate of `22.5 + 10 sin(2π t / 1d + instance)` per second, so counters only go
/// up (until a restart) and `rate()` shows the daily wave.
fn requests_since_restart(instance: usize, t: i64) -> f64 {
    let omega = std::f64::consts::TAU / 86_400.0;
    let phase = instance as f64;
    let (r, t) = (last_restart(instance, t) as f64 / 1000.0, t as f64 / 1000.0);
    22.5 * (t - r) + (10.0 / omega) * ((omega * r + phase).cos() - (omega * t + phase).cos())
}

/// Restarts: each instance restarts once every ~2 days; counters reset.
fn last_restart(instance: usize, t: i64) -> i64 {
    let period = 2 * 86_400_000 + instance as i64 * 3_600_000;
    t - t.rem_euclid(period)
}

impl DemoSeries {
    /// The samples in `[from, to)` on the scrape grid, with jitter (ms offsets).
    pub fn samples(&self, spec: &DemoSpec, from: i64, to: i64) -> Vec<(i64, f64)> {
        let ahead = (from - spec.start).max(0);
        let first = spec.start + (ahead + spec.interval - 1) / spec.interval * spec.interval;
        let mut out = Vec::new();
        let mut slot = first;
        while slot < to.min(spec.end) {
            let jitter = (noise(self.instance as u64, slot as u64) * 40.0) as i64;
            let t = slot + jitter;
            if let Some(v) = self.value(t) {
                out.push((t, v));
            }
            slot += spec.interval;
        }
        out
    }

    fn value(&self, t: i64) -> Option<f64> {
        let i = self.instance;
        let since = (t - last_restart(i, t)) as f64 / 1000.0;
        let served = requests_since_restart(i, t);
        Some(match self.kind {
            Kind::Up => {
                // Down for ~10 minutes around each restart.
                if since < 600.0 {
                    0.0
                } else {
                    1.0
                }
            }
            Kind::Requests { handler, code } => {
                let share = [0.5, 0.3, 0.15, 0.05][handler] * if code == 0 { 0.99 } else { 0.01 };
                (served * share).floor()
            }
            Kind::HistCount { handler } => (served * [0.5, 0.3, 0.15, 0.05][handler]).floor(),
            Kind::HistSum { handler } => served * [0.5, 0.3, 0.15, 0.05][handler] * 0.12,
            Kind::Bucket { handler, le } => {
                let frac = [0.4, 0.6, 0.85, 0.95, 0.99, 1.0][le];
                (served * [0.5, 0.3, 0.15, 0.05][handler] * frac).floor()
            }
            Kind::Cpu { mode } => since * [0.35, 0.1, 1.55][mode],
            Kind::Memory => {
                let wave = ((t as f64 / 3_600_000.0) + i as f64).sin();
                (4.0e9 + 1.0e9 * wave + 2.0e8 * noise(i as u64, (t / 15_000) as u64)).round()
            }
        })
    }
}

/// Writes the demo data as blocks of `block_ms` (aligned windows) under `out_dir`.
pub fn write_blocks(spec: &DemoSpec, block_ms: i64, out_dir: &Path) -> Result<Vec<BlockMeta>> {
    if block_ms <= 0 || spec.interval <= 0 {
        return Err(Error::Usage(
            "block duration and interval must be positive".into(),
        ));
    }
    let all = series(spec);
    let mut metas = Vec::new();
    let mut w = spec.start.div_euclid(block_ms) * block_ms;
    while w < spec.end {
        let mut bw = BlockWriter::create(out_dir)?;
        for s in &all {
            let samples = s.samples(spec, w, w + block_ms);
            bw.add_series(&s.labels, samples)?;
        }
        metas.push(bw.finish(None)?);
        w += block_ms;
    }
    Ok(metas)
}

/// Writes the demo data as OpenMetrics text (timestamps in seconds with ms).
pub fn write_openmetrics(spec: &DemoSpec, mut out: impl Write) -> Result<()> {
    let io = |e| Error::io("writing OpenMetrics", e);
    for s in series(spec) {
        let name = s.labels.metric_name().unwrap_or_default().to_string();
        let rest: Vec<String> = s
            .labels
            .iter()
            .filter(|l| l.name != model::METRIC_NAME)
            .map(|l| format!("{}=\"{}\"", l.name, l.value))
            .collect();
        for (t, v) in s.samples(spec, spec.start, spec.end) {
            writeln!(
                out,
                "{name}{{{}}} {} {}.{:03}",
                rest.join(","),
                model::format_go_float(v),
                t.div_euclid(1000),
                t.rem_euclid(1000)
            )
            .map_err(io)?;
        }
    }
    writeln!(out, "# EOF").map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_only_reset_at_restarts() {
        let spec = DemoSpec {
            start: 0,
            end: 5 * 86_400_000,
            interval: 60_000,
            instances: 2,
        };
        for s in series(&spec) {
            if !matches!(
                s.kind,
                Kind::Requests { .. }
                    | Kind::HistCount { .. }
                    | Kind::Bucket { .. }
                    | Kind::Cpu { .. }
            ) {
                continue;
            }
            let v = s.samples(&spec, spec.start, spec.end);
            for w in v.windows(2) {
                let restarted = last_restart(s.instance, w[1].0) > w[0].0;
                assert!(
                    w[1].1 >= w[0].1 || restarted,
                    "{} decreased at {}",
                    s.labels,
                    w[1].0
                );
            }
        }
    }
}
