//! `aether tools tsdb dump`: every sample of a block or data directory, one line
//! each, exactly as `promtool tsdb dump` prints them:
//! `{__name__="up", job="x"} 1 1680000000000` (labels as Prometheus prints a label
//! set, value as Go's `%g`, timestamp in ms), series in label order, samples in time
//! order; series that occur in several blocks are merged (a timestamp present in
//! more than one block is printed once).

use std::io::Write;
use std::path::Path;

use model::{format_go_float, Labels, Matcher};
use tsdb::block::{self, Block, SeriesEntry};

use crate::{Error, Result};

/// Writes the dump of `dir` (a block, or a directory of blocks) to `out`.
pub async fn dump(
    dir: &Path,
    min_time: i64,
    max_time: i64,
    selectors: &[String],
    out: impl Write,
) -> Result<()> {
    let blocks = block::open_dir_blocks(dir).await?;
    let matcher_sets: Vec<Vec<Matcher>> = if selectors.is_empty() {
        vec![Vec::new()]
    } else {
        selectors
            .iter()
            .map(|s| parse_selector(s))
            .collect::<Result<_>>()?
    };
    dump_blocks(&blocks, min_time, max_time, &matcher_sets, out).await
}

/// Parses a series selector such as `up{job=~"a.*"}` or `{__name__="x"}`.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>> {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::{self, Expr};
    let expr =
        parser::parse(s).map_err(|e| Error::Usage(format!("invalid selector {s:?}: {e}")))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(Error::Usage(format!(
            "invalid selector {s:?}: want a series selector like up{{job=\"x\"}}"
        )));
    };
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(model::METRIC_NAME, name.clone()));
    }
    for m in &vs.matchers.matchers {
        let kind = match m.op {
            MatchOp::Equal => model::MatchType::Equal,
            MatchOp::NotEqual => model::MatchType::NotEqual,
            MatchOp::Re(_) => model::MatchType::Regex,
            MatchOp::NotRe(_) => model::MatchType::NotRegex,
        };
        out.push(Matcher::new(kind, m.name.clone(), m.value.clone())?);
    }
    Ok(out)
}

/// Writes the dump of open blocks (local or in a bucket) to `out`; `matcher_sets`
/// select series (union; an empty set selects all).
pub async fn dump_blocks(
    blocks: &[Block],
    min_time: i64,
    max_time: i64,
    matcher_sets: &[Vec<Matcher>],
    out: impl Write,
) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    // Every block's matching series refs with their labels, in label order.
    let mut per_block: Vec<Vec<SeriesEntry>> = Vec::with_capacity(blocks.len());
    for b in blocks {
        if b.meta().max_time <= min_time || b.meta().min_time > max_time {
            per_block.push(Vec::new());
            continue;
        }
        per_block.push(b.select(matcher_sets).await?);
    }
    // K-way merge by labels across blocks (each list is sorted).
    let mut pos = vec![0usize; blocks.len()];
    let mut line = String::with_capacity(256);
    loop {
        let mut next: Option<&Labels> = None;
        for (i, list) in per_block.iter().enumerate() {
            if let Some(s) = list.get(pos[i]) {
                if next.is_none_or(|n| &s.labels < n) {
                    next = Some(&s.labels);
                }
            }
        }
        let Some(labels) = next.cloned() else { break };
        let mut samples: Vec<(i64, f64)> = Vec::new();
        let mut from_blocks = 0;
        for (i, list) in per_block.iter().enumerate() {
            if let Some(s) = list.get(pos[i]) {
                if s.labels == labels {
                    blocks[i]
                        .read_float_samples(s, min_time, max_time, &mut samples)
                        .await?;
                    pos[i] += 1;
                    from_blocks += 1;
                }
            }
        }
        if from_blocks > 1 {
            // Overlapping blocks: order by time, keep the first sample of a timestamp.
            samples.sort_by_key(|s| s.0);
            samples.dedup_by_key(|s| s.0);
        }
        let prefix = labels.to_string();
        for (t, v) in samples {
            line.clear();
            line.push_str(&prefix);
            line.push(' ');
            line.push_str(&format_go_float(v));
            line.push(' ');
            line.push_str(&t.to_string());
            line.push('\n');
            out.write_all(line.as_bytes())
                .map_err(|e| Error::io("writing dump", e))?;
        }
    }
    out.flush().map_err(|e| Error::io("writing dump", e))?;
    Ok(())
}
