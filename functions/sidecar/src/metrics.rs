//! The sidecar's metrics, in Prometheus's text exposition format (hand-rolled: a
//! dozen counters and gauges need no metrics library). Names follow Thanos's where
//! Thanos has the same metric, so its dashboards and alerts work.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters and gauges of one sidecar.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Blocks uploaded.
    pub uploads: AtomicU64,
    /// Block uploads that failed (after retries, or with a permanent error).
    pub upload_failures: AtomicU64,
    /// Bytes of block files uploaded.
    pub uploaded_bytes: AtomicU64,
    /// Blocks that failed verification and were not uploaded.
    pub corrupted_blocks: AtomicU64,
    /// Blocks found complete in the bucket and recorded without uploading.
    pub already_in_bucket: AtomicU64,
    /// Shipper passes over the TSDB directory.
    pub dir_syncs: AtomicU64,
    /// Passes that failed as a whole (e.g. the state file could not be written).
    pub dir_sync_failures: AtomicU64,
    /// Unix time (s) of the last successful block upload; 0 before the first.
    pub last_upload_time: AtomicI64,
    /// 1 when Prometheus answered the last check, else 0.
    pub prometheus_up: AtomicI64,
    /// Unix time (s) of the last successful Prometheus check.
    pub last_heartbeat_time: AtomicI64,
    /// Series requests served.
    pub series_requests: AtomicU64,
    /// Series requests that failed.
    pub series_request_failures: AtomicU64,
}

impl Metrics {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 9] = [
            (
                "thanos_shipper_uploads_total",
                "Blocks uploaded by the shipper.",
                &self.uploads,
            ),
            (
                "thanos_shipper_upload_failures_total",
                "Block uploads that failed.",
                &self.upload_failures,
            ),
            (
                "thanos_shipper_uploaded_bytes_total",
                "Bytes of block files uploaded.",
                &self.uploaded_bytes,
            ),
            (
                "thanos_shipper_corrupted_blocks_total",
                "Blocks that failed verification and were not uploaded.",
                &self.corrupted_blocks,
            ),
            (
                "thanos_shipper_already_uploaded_total",
                "Blocks found complete in the bucket and recorded without uploading.",
                &self.already_in_bucket,
            ),
            (
                "thanos_shipper_dir_syncs_total",
                "Passes over the TSDB directory.",
                &self.dir_syncs,
            ),
            (
                "thanos_shipper_dir_sync_failures_total",
                "Passes over the TSDB directory that failed.",
                &self.dir_sync_failures,
            ),
            (
                "thanos_sidecar_series_requests_total",
                "StoreAPI Series requests.",
                &self.series_requests,
            ),
            (
                "thanos_sidecar_series_request_failures_total",
                "StoreAPI Series requests that failed.",
                &self.series_request_failures,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let gauges: [(&str, &str, &AtomicI64); 3] = [
            (
                "thanos_shipper_last_successful_upload_time",
                "Unix time of the last successful block upload (0: none yet).",
                &self.last_upload_time,
            ),
            (
                "thanos_sidecar_prometheus_up",
                "Whether Prometheus answered the last check (1) or not (0).",
                &self.prometheus_up,
            ),
            (
                "thanos_sidecar_last_heartbeat_success_time_seconds",
                "Unix time of the last successful check of Prometheus.",
                &self.last_heartbeat_time,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let m = Metrics::default();
        Metrics::inc(&m.uploads);
        m.prometheus_up.store(1, Ordering::Relaxed);
        let t = m.render();
        assert!(t.contains("\nthanos_shipper_uploads_total 1\n"), "{t}");
        assert!(t.contains(
            "# TYPE thanos_sidecar_prometheus_up gauge\nthanos_sidecar_prometheus_up 1\n"
        ));
        assert!(t.contains("thanos_shipper_last_successful_upload_time 0"));
    }
}
