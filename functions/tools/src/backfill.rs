//! `create-blocks-from openmetrics`: turns an OpenMetrics file into TSDB blocks, one
//! per aligned block-duration window (2h by default, as promtool does).
//!
//! One parsing pass spools every sample into a per-window scratch file (20 bytes a
//! sample) and keeps only the series' label sets in memory; then each window is
//! loaded, sorted and written as a block with the streaming block writer. Memory is
//! bounded by the series count plus one window's samples (promtool holds one window
//! in its head too, but parses the input once per window).
//!
//! A sample repeated with the same value is dropped; the same timestamp with another
//! value fails, as promtool's appender does.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use model::Labels;
use tsdb::block::BlockWriter;
use tsdb::meta::BlockMeta;

use crate::openmetrics::Parser;
use crate::{Error, Result};

/// Parses a Prometheus duration (`2h`, `1h30m`, `90s`, `1d`, `1w`, `1y`, `500ms`)
/// into milliseconds, with the bucket config's parser (one grammar everywhere).
pub fn parse_duration(s: &str) -> Result<i64> {
    let d = bucket::config::parse_duration(s)
        .map_err(|e| Error::Usage(format!("{e} (want e.g. 2h, 1h30m, 1d)")))?;
    i64::try_from(d.as_millis()).map_err(|_| Error::Usage(format!("duration {s:?} too large")))
}

/// Where one window's samples are spooled.
struct Window {
    path: PathBuf,
    buf: Vec<u8>,
}

const RECORD: usize = 4 + 8 + 8;
const FLUSH_TOTAL: usize = 64 << 20;

/// Backfills `input` into blocks under `output`; returns their metas in time order.
pub fn from_openmetrics_file(input: &Path, output: &Path, block_ms: i64) -> Result<Vec<BlockMeta>> {
    let f = File::open(input).map_err(|e| Error::io(format!("open {}", input.display()), e))?;
    from_openmetrics(BufReader::with_capacity(1 << 16, f), output, block_ms)
}

/// Backfills an OpenMetrics stream into blocks under `output`.
pub fn from_openmetrics(
    input: impl std::io::BufRead,
    output: &Path,
    block_ms: i64,
) -> Result<Vec<BlockMeta>> {
    if block_ms <= 0 {
        return Err(Error::Usage("block duration must be positive".into()));
    }
    std::fs::create_dir_all(output)
        .map_err(|e| Error::io(format!("create {}", output.display()), e))?;
    let scratch = tempfile::Builder::new()
        .prefix(".backfill-")
        .tempdir_in(output)
        .map_err(|e| Error::io(format!("create scratch dir in {}", output.display()), e))?;

    let mut ids: HashMap<Labels, u32> = HashMap::new();
    let mut series: Vec<Labels> = Vec::new();
    let mut windows: HashMap<i64, Window> = HashMap::new();
    let mut buffered = 0usize;
    for entry in Parser::new(input) {
        let e = entry?;
        let id = match ids.get(&e.labels) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(series.len())
                    .map_err(|_| Error::Usage("more than 2^32 series".into()))?;
                series.push(e.labels.clone());
                ids.insert(e.labels, id);
                id
            }
        };
        let start = e.t.div_euclid(block_ms) * block_ms;
        let w = windows.entry(start).or_insert_with(|| Window {
            path: scratch.path().join(format!("w{start}")),
            buf: Vec::new(),
        });
        w.buf.extend_from_slice(&id.to_le_bytes());
        w.buf.extend_from_slice(&e.t.to_le_bytes());
        w.buf.extend_from_slice(&e.v.to_bits().to_le_bytes());
        buffered += RECORD;
        if buffered >= FLUSH_TOTAL {
            for w in windows.values_mut() {
                flush(w)?;
            }
            buffered = 0;
        }
    }
    drop(ids);
    // Rank of each series in label order: blocks take series sorted by labels.
    let mut order: Vec<u32> = (0..series.len() as u32).collect();
    order.sort_by(|a, b| series[*a as usize].cmp(&series[*b as usize]));
    let mut rank = vec![0u32; series.len()];
    for (r, id) in order.iter().enumerate() {
        rank[*id as usize] = r as u32;
    }

    let mut starts: Vec<i64> = windows.keys().copied().collect();
    starts.sort_unstable();
    let mut metas = Vec::with_capacity(starts.len());
    for start in starts {
        let Some(mut w) = windows.remove(&start) else {
            continue;
        };
        flush(&mut w)?;
        let mut records = read_window(&w.path)?;
        std::fs::remove_file(&w.path)
            .map_err(|e| Error::io(format!("remove {}", w.path.display()), e))?;
        records.sort_by_key(|&(id, t, _)| (rank[id as usize], t));
        let mut bw = BlockWriter::create(output)?;
        let mut i = 0;
        while i < records.len() {
            let id = records[i].0;
            let mut j = i;
            let mut samples: Vec<(i64, f64)> = Vec::new();
            while j < records.len() && records[j].0 == id {
                let (_, t, v) = records[j];
                match samples.last() {
                    Some(&(pt, pv)) if pt == t => {
                        if pv.to_bits() != v.to_bits() {
                            bw.abort();
                            return Err(Error::Usage(format!(
                                "series {}: two different values for timestamp {t} ms (duplicate sample)",
                                series[id as usize]
                            )));
                        }
                    }
                    _ => samples.push((t, v)),
                }
                j += 1;
            }
            if let Err(e) = bw.add_series(&series[id as usize], samples) {
                bw.abort();
                return Err(e.into());
            }
            i = j;
        }
        metas.push(bw.finish(None)?);
    }
    Ok(metas)
}

fn flush(w: &mut Window) -> Result<()> {
    if w.buf.is_empty() {
        return Ok(());
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&w.path)
        .map_err(|e| Error::io(format!("open {}", w.path.display()), e))?;
    f.write_all(&w.buf)
        .map_err(|e| Error::io(format!("write {}", w.path.display()), e))?;
    w.buf = Vec::new();
    Ok(())
}

fn read_window(p: &Path) -> Result<Vec<(u32, i64, f64)>> {
    let mut b = Vec::new();
    File::open(p)
        .and_then(|mut f| f.read_to_end(&mut b))
        .map_err(|e| Error::io(format!("read {}", p.display()), e))?;
    Ok(b.chunks_exact(RECORD)
        .map(|r| {
            let id = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let mut t = [0u8; 8];
            t.copy_from_slice(&r[4..12]);
            let mut v = [0u8; 8];
            v.copy_from_slice(&r[12..20]);
            (
                id,
                i64::from_le_bytes(t),
                f64::from_bits(u64::from_le_bytes(v)),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("1d").unwrap(), 86_400_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }
}
