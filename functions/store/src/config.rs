//! Settings of the store-read handler and the parsing of its flag values
//! (`--min-time`/`--max-time`, `--index-cache-size`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A time bound of `--min-time` / `--max-time`: a fixed instant (RFC3339) or an
/// offset from the time of each request (`-2w`, `2h45m`), as Thanos's
/// `TimeOrDurationValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// Unix ms.
    Absolute(i64),
    /// Milliseconds added to "now" (negative for the past).
    Relative(i64),
}

impl TimeBound {
    /// The bound in unix ms at `now_ms`.
    pub fn at(&self, now_ms: i64) -> i64 {
        match *self {
            TimeBound::Absolute(t) => t,
            TimeBound::Relative(d) => now_ms.saturating_add(d),
        }
    }

    /// The bound in unix ms now.
    pub fn now(&self) -> i64 {
        self.at(now_ms())
    }

    /// Parses RFC3339 (`2024-01-02T03:04:05Z`, `...05.123+02:00`) or a
    /// Prometheus duration with optional sign (`-2w`, `-1d12h`, `30m`).
    pub fn parse(s: &str) -> Result<TimeBound, String> {
        let s = s.trim();
        if let Some(t) = parse_rfc3339(s) {
            return Ok(TimeBound::Absolute(t));
        }
        let (neg, rest) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let d = bucket::config::parse_duration(rest)
            .map_err(|_| format!("invalid time {s:?}: want RFC3339 or a duration like -2w"))?;
        let ms = i64::try_from(d.as_millis()).map_err(|_| format!("time {s:?} too large"))?;
        Ok(TimeBound::Relative(if neg { -ms } else { ms }))
    }
}

/// Current unix time in ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC3339 to unix ms; `None` if `s` is not RFC3339.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let t = s.get(from..to)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let v = num(i + 1, i + 3)? * 60 + num(i + 4, i + 6)?;
            if *c == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Parses a byte size: `250MB`, `1GB`, `512MiB`, `64KB`, `1048576`, `0`. Units
/// are powers of 1024 (as Thanos's `--index-cache-size`), with or without `i`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("invalid size {s:?}: want e.g. 250MB or 1GB"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
    };
    Ok((n * mult as f64) as u64)
}

/// Settings of a [`crate::BucketStore`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Serve only blocks overlapping `[min_time, max_time]` and clamp requests to it.
    pub min_time: Option<TimeBound>,
    pub max_time: Option<TimeBound>,
    /// Bytes of the in-memory LRU of postings, series and chunk ranges.
    pub index_cache_bytes: u64,
    /// Index headers kept in memory (each a few KB to MBs).
    pub max_cached_headers: usize,
    /// Largest number of series one Series request may touch (0 = none).
    pub series_limit: u64,
    /// Largest number of samples one Series request may touch (0 = none),
    /// estimated as 120 per chunk as Thanos does.
    pub samples_limit: u64,
    /// A stored bucket index older than this is updated by listing the bucket.
    pub bucket_index_max_age: Duration,
    /// How often the handler re-reads the bucket index (on demand: the first
    /// request after this long triggers it).
    pub sync_interval: Duration,
    /// Blocks read concurrently per request.
    pub block_concurrency: usize,
    /// Most series per batch of chunk reads.
    pub series_batch: usize,
    /// Most chunks per batch of chunk reads (bounds the memory of one batch).
    pub chunks_batch: usize,
    /// Blocks marked for deletion longer ago than this are not served (Thanos's
    /// `--ignore-deletion-marks-delay`).
    pub ignore_deletion_marks_delay: Duration,
    /// Optional local directory for index headers (a scratch cache; may vanish).
    pub local_header_dir: Option<std::path::PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            min_time: None,
            max_time: None,
            index_cache_bytes: 250 << 20,
            max_cached_headers: 10_000,
            series_limit: 0,
            samples_limit: 0,
            bucket_index_max_age: Duration::from_secs(15 * 60),
            sync_interval: Duration::from_secs(60),
            block_concurrency: 8,
            series_batch: 8192,
            chunks_batch: 16384,
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            local_header_dir: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000_500)
        );
        assert_eq!(parse_rfc3339("2023-11-14"), None);
        assert_eq!(parse_rfc3339("-2w"), None);
    }

    #[test]
    fn bounds_and_sizes() {
        assert_eq!(
            TimeBound::parse("-2w").unwrap(),
            TimeBound::Relative(-14 * 86_400_000)
        );
        assert_eq!(
            TimeBound::parse("2h45m").unwrap(),
            TimeBound::Relative(9_900_000)
        );
        assert_eq!(
            TimeBound::parse("2023-11-14T22:13:20Z").unwrap(),
            TimeBound::Absolute(1_700_000_000_000)
        );
        assert!(TimeBound::parse("yesterday").is_err());
        assert_eq!(TimeBound::Relative(-10).at(100), 90);
        assert_eq!(parse_bytes("250MB").unwrap(), 250 << 20);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert_eq!(parse_bytes("1.5KB").unwrap(), 1536);
        assert!(parse_bytes("12 parsecs").is_err());
    }
}
