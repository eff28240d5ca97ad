//! `aether tools bucket inspect`: the bucket's blocks as a table (as
//! `thanos tools bucket inspect`) or JSON, plus the small formatting helpers the
//! other bucket tools share (RFC3339 times, Go-style durations, stream keys).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use bucket::ObjstoreConfig;
use serde_json::json;
use tsdb::meta::BlockMeta;

use crate::{Error, Result};

/// Formats a millisecond Unix timestamp as RFC3339 in UTC (`2023-04-01T00:00:00Z`,
/// with `.123` when the milliseconds are not zero).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let frac = if milli == 0 {
        String::new()
    } else {
        format!(".{milli:03}")
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A millisecond duration as Go prints a `time.Duration` (`2h0m0s`, `1m30.5s`).
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if milli == 0 {
        format!("{s}s")
    } else {
        let f = format!("{milli:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{sign}{m}m{secs}")
    } else if s > 0 || ms >= 1000 {
        format!("{sign}{secs}")
    } else {
        format!("{sign}{ms}ms")
    }
}

/// A block's external labels (its stream), empty when it has no thanos section.
pub fn stream_labels(m: &BlockMeta) -> BTreeMap<String, String> {
    m.thanos
        .as_ref()
        .map(|t| t.labels.clone())
        .unwrap_or_default()
}

/// External labels as `a=1,b=2` (Thanos's LABELS column).
pub fn labels_string(l: &BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A resolution in ms as Thanos shows it: `0s`, `5m0s`, `1h0m0s`.
pub fn resolution_string(res: i64) -> String {
    go_duration(res)
}

fn source(m: &BlockMeta) -> String {
    m.thanos
        .as_ref()
        .map(|t| t.source.clone())
        .unwrap_or_default()
}

/// Sorts metas by external labels, then minTime, then ULID (the inspect order).
pub fn sort_for_inspect(metas: &mut [BlockMeta]) {
    metas.sort_by(|a, b| {
        stream_labels(a)
            .cmp(&stream_labels(b))
            .then(a.min_time.cmp(&b.min_time))
            .then(a.ulid.cmp(&b.ulid))
    });
}

/// The column headers of the inspect table.
pub const INSPECT_COLUMNS: [&str; 11] = [
    "ULID",
    "FROM",
    "UNTIL",
    "RANGE",
    "#SERIES",
    "#SAMPLES",
    "#CHUNKS",
    "COMP-LEVEL",
    "RESOLUTION",
    "SOURCE",
    "LABELS",
];

/// One row of the inspect table, cell by cell in [`INSPECT_COLUMNS`] order.
pub fn inspect_row(m: &BlockMeta) -> Vec<String> {
    vec![
        m.ulid.to_string(),
        rfc3339(m.min_time),
        rfc3339(m.max_time),
        go_duration(m.max_time - m.min_time),
        m.stats.num_series.to_string(),
        m.stats.num_samples.to_string(),
        m.stats.num_chunks.to_string(),
        m.compaction.level.to_string(),
        resolution_string(m.resolution()),
        source(m),
        labels_string(&stream_labels(m)),
    ]
}

/// One block as the JSON object `inspect -o json` prints.
pub fn inspect_json(m: &BlockMeta) -> serde_json::Value {
    json!({
        "ulid": m.ulid.to_string(),
        "minTime": m.min_time,
        "maxTime": m.max_time,
        "from": rfc3339(m.min_time),
        "until": rfc3339(m.max_time),
        "range": go_duration(m.max_time - m.min_time),
        "numSeries": m.stats.num_series,
        "numSamples": m.stats.num_samples,
        "numChunks": m.stats.num_chunks,
        "compactionLevel": m.compaction.level,
        "resolution": m.resolution(),
        "source": source(m),
        "labels": stream_labels(m),
    })
}

/// Writes `rows` under `header` as a `|`-bordered, padded table.
pub fn write_table(header: &[&str], rows: &[Vec<String>], mut out: impl Write) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let io = |e| Error::io("writing output", e);
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        format!("|{}|", padded.join("|"))
    };
    writeln!(
        out,
        "{}",
        line(header.iter().map(|h| h.to_string()).collect())
    )
    .map_err(io)?;
    let sep: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    writeln!(out, "|{}|", sep.join("|")).map_err(io)?;
    for r in rows {
        writeln!(out, "{}", line(r.clone())).map_err(io)?;
    }
    Ok(())
}

/// Output format of `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectFormat {
    Table,
    Tsv,
    Json,
}

impl InspectFormat {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "table" | "text" => Ok(InspectFormat::Table),
            "tsv" => Ok(InspectFormat::Tsv),
            "json" => Ok(InspectFormat::Json),
            o => Err(Error::Usage(format!(
                "invalid -o {o:?}: want table, tsv or json"
            ))),
        }
    }
}

/// Prints the given metas (sorted by labels, then minTime) in `format`.
pub fn write_inspect(
    metas: &mut [BlockMeta],
    format: InspectFormat,
    mut out: impl Write,
) -> Result<()> {
    sort_for_inspect(metas);
    let io = |e| Error::io("writing output", e);
    match format {
        InspectFormat::Json => {
            let v: Vec<_> = metas.iter().map(inspect_json).collect();
            let s = serde_json::to_string_pretty(&v).map_err(|e| Error::Usage(e.to_string()))?;
            writeln!(out, "{s}").map_err(io)
        }
        InspectFormat::Tsv => {
            writeln!(out, "{}", INSPECT_COLUMNS.join("\t")).map_err(io)?;
            for m in metas.iter() {
                writeln!(out, "{}", inspect_row(m).join("\t")).map_err(io)?;
            }
            Ok(())
        }
        InspectFormat::Table => {
            let rows: Vec<_> = metas.iter().map(inspect_row).collect();
            write_table(&INSPECT_COLUMNS, &rows, out)
        }
    }
}

/// `inspect`: lists the bucket's metas and prints them. Partial and unreadable
/// blocks are reported on stderr (they have no meta to show).
pub async fn inspect(cfg: &ObjstoreConfig, format: InspectFormat, out: impl Write) -> Result<()> {
    let store = cfg.build()?;
    let spinner = Progress::new("listing blocks", 0);
    let mut metas = bucket::list_block_metas(store.as_ref()).await?;
    spinner.finish();
    write_inspect(&mut metas.metas, format, out)?;
    for p in &metas.partial {
        eprintln!("{p}: partial upload (no meta.json)");
    }
    for (id, why) in &metas.corrupted {
        eprintln!("{id}: unreadable meta.json: {why}");
    }
    Ok(())
}

/// A progress bar (indicatif) on stderr, drawn only when stderr is a terminal:
/// a bar with count, rate and ETA when the total is known, else a spinner.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// `total` 0 means unknown (a spinner with the label and a count).
    pub fn new(label: &str, total: usize) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = if total == 0 {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg}… {pos} ({elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        } else {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        };
        bar.set_message(label.to_string());
        Progress { bar: Some(bar) }
    }

    pub fn inc(&mut self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// Clears the bar.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_durations() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_680_307_200_000), "2023-04-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(go_duration(7_200_000), "2h0m0s");
        assert_eq!(go_duration(90_500), "1m30.5s");
        assert_eq!(go_duration(300_000), "5m0s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(250), "250ms");
    }
}
