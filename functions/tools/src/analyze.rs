//! `aether tools tsdb analyze`: the shape of a block: series, label and metric-name
//! cardinality, and how many bytes a sample takes (chunk bytes / samples), in the
//! layout of `promtool tsdb analyze`.

use std::io::Write;
use std::path::Path;

use tsdb::block::{open_dir_blocks, Block, CHUNKS_DIRNAME};

use crate::{Error, Result};

/// Analyzes `dir` (a block, or the newest block of a data directory) into `out`.
pub async fn analyze(dir: &Path, limit: usize, mut out: impl Write) -> Result<()> {
    let blocks = open_dir_blocks(dir).await?;
    let Some(block) = blocks.iter().max_by_key(|b| b.meta().ulid) else {
        return Err(Error::Usage(format!("no blocks in {}", dir.display())));
    };
    let block_dir = if dir.join("meta.json").is_file() {
        dir.to_path_buf()
    } else {
        dir.join(block.meta().ulid.to_string())
    };
    let text = report(block, &block_dir, limit).await?;
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("writing analysis", e))
}

fn go_duration(ms: i64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let frac = ms % 1000;
    let s = if frac != 0 {
        format!("{s}.{frac:03}").trim_end_matches('0').to_string()
    } else {
        s.to_string()
    };
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

async fn report(block: &Block, block_dir: &Path, limit: usize) -> Result<String> {
    use std::fmt::Write as _;
    let meta = block.meta();
    let ir = block.index();
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "Block ID: {}", meta.ulid);
    let _ = writeln!(
        w,
        "Duration: {}",
        go_duration(meta.max_time - meta.min_time)
    );
    let _ = writeln!(w, "Series: {}", meta.stats.num_series);

    let names = ir.label_names();
    let mut value_len: Vec<(String, u64)> = Vec::new();
    let mut cardinality: Vec<(String, u64)> = Vec::new();
    let mut pairs: u64 = 0;
    let mut entries: u64 = 0;
    let mut pair_counts: Vec<(String, u64)> = Vec::new();
    for n in &names {
        let values = ir.label_values(n);
        cardinality.push((n.clone(), values.len() as u64));
        value_len.push((n.clone(), values.iter().map(|v| v.len() as u64).sum()));
        pairs += values.len() as u64;
        for v in &values {
            let c = ir.postings(n, &[v.as_str()]).await?.len() as u64;
            entries += c;
            pair_counts.push((format!("{n}={v}"), c));
        }
    }
    let _ = writeln!(w, "Label names: {}", names.len());
    let _ = writeln!(w, "Postings (unique label pairs): {pairs}");
    let _ = writeln!(w, "Postings entries (total label pairs): {entries}");

    let chunk_bytes: u64 = std::fs::read_dir(block_dir.join(CHUNKS_DIRNAME))
        .map_err(|e| Error::io(format!("read {}", block_dir.display()), e))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let index_bytes = std::fs::metadata(block_dir.join("index"))
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = writeln!(w, "Samples: {}", meta.stats.num_samples);
    let _ = writeln!(w, "Chunks: {}", meta.stats.num_chunks);
    let _ = writeln!(w, "Chunk bytes: {chunk_bytes}");
    let _ = writeln!(w, "Index bytes: {index_bytes}");
    if meta.stats.num_samples > 0 {
        let _ = writeln!(
            w,
            "Bytes per sample: {:.3} (chunks), {:.3} (chunks + index)",
            chunk_bytes as f64 / meta.stats.num_samples as f64,
            (chunk_bytes + index_bytes) as f64 / meta.stats.num_samples as f64
        );
    }

    let mut section = |title: &str, mut v: Vec<(String, u64)>| {
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let _ = writeln!(w, "\n{title}:");
        for (k, c) in v.into_iter().take(limit) {
            let _ = writeln!(w, "{c} {k}");
        }
    };
    section(
        "Label names with highest cumulative label value length",
        value_len,
    );
    section("Highest cardinality labels", cardinality);
    section("Most common label pairs", pair_counts.clone());
    let metric_names = pair_counts
        .into_iter()
        .filter_map(|(k, c)| k.strip_prefix("__name__=").map(|n| (n.to_string(), c)))
        .collect();
    section("Highest cardinality metric names", metric_names);
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_like_go() {
        assert_eq!(super::go_duration(7_200_000), "2h0m0s");
        assert_eq!(super::go_duration(90_500), "1m30.5s");
        assert_eq!(super::go_duration(5_000), "5s");
        assert_eq!(super::go_duration(1), "1ms");
    }
}
