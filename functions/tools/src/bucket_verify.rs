//! `aether tools bucket verify`: finds what breaks compaction and queries —
//! overlapping blocks within a stream and resolution, partial uploads, metas that
//! don't parse, and (with the `index` issue) out-of-order series or chunks and
//! chunks outside the block's time range.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use bucket::object_store::ObjectStore;
use bucket::ObjstoreConfig;
use tsdb::meta::BlockMeta;
use ulid::Ulid;

use crate::bucket_inspect::{labels_string, resolution_string, rfc3339, stream_labels, Progress};
use crate::{Error, Result};

/// Which checks `verify` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Issue {
    /// Blocks of one stream and resolution whose time ranges overlap.
    Overlaps,
    /// Block directories without meta.json.
    Partial,
    /// meta.json that doesn't parse.
    Meta,
    /// Series and chunk order in each block's index (reads every index).
    Index,
}

impl Issue {
    /// The default set: everything but the (expensive) index check.
    pub const DEFAULT: [Issue; 3] = [Issue::Overlaps, Issue::Partial, Issue::Meta];

    /// Parses an issue name; Thanos's names are accepted too.
    pub fn parse(s: &str) -> Result<Issue> {
        match s {
            "overlaps" | "overlapped_blocks" => Ok(Issue::Overlaps),
            "partial" | "partial_blocks" => Ok(Issue::Partial),
            "meta" | "bad_meta" => Ok(Issue::Meta),
            "index" | "index_known_issues" => Ok(Issue::Index),
            o => Err(Error::Usage(format!(
                "unknown issue {o:?}: want overlaps, partial, meta or index"
            ))),
        }
    }
}

/// A set of overlapping blocks of one stream and resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    pub labels: BTreeMap<String, String>,
    pub resolution: i64,
    /// The blocks, by minTime: each overlaps the time range covered by those before.
    pub blocks: Vec<(Ulid, i64, i64)>,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub blocks: usize,
    pub overlaps: Vec<Overlap>,
    pub partial: Vec<Ulid>,
    pub bad_meta: Vec<(Ulid, String)>,
    pub index: Vec<(Ulid, String)>,
}

impl VerifyReport {
    pub fn issue_count(&self) -> usize {
        self.overlaps.len() + self.partial.len() + self.bad_meta.len() + self.index.len()
    }

    /// Writes the findings, one line each, then a summary line.
    pub fn write(&self, mut out: impl Write) -> Result<()> {
        let io = |e| Error::io("writing output", e);
        for o in &self.overlaps {
            let blocks: Vec<String> = o
                .blocks
                .iter()
                .map(|(id, a, b)| format!("{id} [{} - {}]", rfc3339(*a), rfc3339(*b)))
                .collect();
            writeln!(
                out,
                "overlap: labels={{{}}} resolution={}: {}",
                labels_string(&o.labels),
                resolution_string(o.resolution),
                blocks.join(", ")
            )
            .map_err(io)?;
        }
        for p in &self.partial {
            writeln!(
                out,
                "partial: {p}: no meta.json (partial upload or deletion in progress)"
            )
            .map_err(io)?;
        }
        for (id, why) in &self.bad_meta {
            writeln!(out, "meta: {id}: {why}").map_err(io)?;
        }
        for (id, why) in &self.index {
            writeln!(out, "index: {id}: {why}").map_err(io)?;
        }
        writeln!(
            out,
            "verified {} blocks: {} issues ({} overlaps, {} partial, {} bad meta, {} index)",
            self.blocks,
            self.issue_count(),
            self.overlaps.len(),
            self.partial.len(),
            self.bad_meta.len(),
            self.index.len()
        )
        .map_err(io)
    }
}

/// The overlaps among `metas`, grouped by stream (external labels) and resolution.
pub fn find_overlaps(metas: &[BlockMeta]) -> Vec<Overlap> {
    let mut groups: BTreeMap<(BTreeMap<String, String>, i64), Vec<&BlockMeta>> = BTreeMap::new();
    for m in metas {
        groups
            .entry((stream_labels(m), m.resolution()))
            .or_default()
            .push(m);
    }
    let mut out = Vec::new();
    for ((labels, resolution), mut ms) in groups {
        ms.sort_by_key(|m| (m.min_time, m.max_time, m.ulid));
        let mut cur: Vec<&BlockMeta> = Vec::new();
        let mut cur_max = i64::MIN;
        for m in ms {
            if !cur.is_empty() && m.min_time < cur_max {
                cur.push(m);
            } else {
                if cur.len() > 1 {
                    out.push(overlap(&labels, resolution, &cur));
                }
                cur = vec![m];
                cur_max = i64::MIN;
            }
            cur_max = cur_max.max(m.max_time);
        }
        if cur.len() > 1 {
            out.push(overlap(&labels, resolution, &cur));
        }
    }
    out
}

fn overlap(labels: &BTreeMap<String, String>, resolution: i64, ms: &[&BlockMeta]) -> Overlap {
    Overlap {
        labels: labels.clone(),
        resolution,
        blocks: ms
            .iter()
            .map(|m| (m.ulid, m.min_time, m.max_time))
            .collect(),
    }
}

/// Series read per request when checking an index.
const SERIES_BATCH: usize = 1024;

/// Checks one block's index: series in strictly increasing label order, each
/// series' chunks ordered and not overlapping, chunks within the block's range,
/// and the series count matching meta.json. Returns the problems found.
pub async fn check_block_index(
    store: Arc<dyn ObjectStore>,
    meta: &BlockMeta,
) -> Result<Vec<String>> {
    let block = bucket::open_block(store, meta.clone(), None).await?;
    let index = block.index();
    let refs = index.all_postings().await?;
    let mut problems = Vec::new();
    let mut prev: Option<model::Labels> = None;
    let mut n = 0u64;
    const MAX_REPORTED: usize = 10;
    for batch in refs.chunks(SERIES_BATCH) {
        for (labels, chunks) in index.series_many(batch).await? {
            n += 1;
            if let Some(p) = &prev {
                if &labels <= p {
                    problems.push(format!("series {labels} out of order (after {p})"));
                }
            }
            let mut prev_max = i64::MIN;
            for (i, c) in chunks.iter().enumerate() {
                if c.min_time > c.max_time {
                    problems.push(format!(
                        "series {labels}: chunk {i} has minTime {} > maxTime {}",
                        c.min_time, c.max_time
                    ));
                }
                if i > 0 && c.min_time <= prev_max {
                    problems.push(format!(
                        "series {labels}: chunk {i} [{}, {}] out of order or overlapping the one before (ending {prev_max})",
                        c.min_time, c.max_time
                    ));
                }
                // A block covers [minTime, maxTime): its last sample is before maxTime.
                if c.min_time < meta.min_time || c.max_time >= meta.max_time {
                    problems.push(format!(
                        "series {labels}: chunk {i} [{}, {}] outside the block's range [{}, {})",
                        c.min_time, c.max_time, meta.min_time, meta.max_time
                    ));
                }
                prev_max = prev_max.max(c.max_time);
            }
            prev = Some(labels);
            if problems.len() > MAX_REPORTED {
                problems.truncate(MAX_REPORTED);
                problems.push("more problems not shown".into());
                return Ok(problems);
            }
        }
    }
    if n != meta.stats.num_series && meta.stats.num_series != 0 {
        problems.push(format!(
            "index holds {n} series, meta.json says {}",
            meta.stats.num_series
        ));
    }
    Ok(problems)
}

/// Runs the `issues` checks over the bucket. Blocks marked for deletion are left
/// out of the overlap check (the compactor marks a compaction's sources; they
/// overlap its output until they are deleted).
pub async fn verify(cfg: &ObjstoreConfig, issues: &[Issue]) -> Result<VerifyReport> {
    let store = cfg.build()?;
    let listing = Progress::new("listing blocks", 0);
    let metas = bucket::list_block_metas(store.as_ref()).await?;
    listing.finish();
    let mut report = VerifyReport {
        blocks: metas.metas.len() + metas.partial.len() + metas.corrupted.len(),
        ..Default::default()
    };
    if issues.contains(&Issue::Partial) {
        report.partial = metas.partial.clone();
    }
    if issues.contains(&Issue::Meta) {
        report.bad_meta = metas.corrupted.clone();
    }
    if issues.contains(&Issue::Overlaps) {
        let mut live = Vec::with_capacity(metas.metas.len());
        let mut p = Progress::new("reading deletion marks", metas.metas.len());
        for m in &metas.metas {
            if bucket::markers::read_deletion_mark(store.as_ref(), m.ulid)
                .await?
                .is_none()
            {
                live.push(m.clone());
            }
            p.inc();
        }
        p.finish();
        report.overlaps = find_overlaps(&live);
    }
    if issues.contains(&Issue::Index) {
        let mut p = Progress::new("checking indexes", metas.metas.len());
        for m in &metas.metas {
            match check_block_index(Arc::clone(&store), m).await {
                Ok(problems) => report
                    .index
                    .extend(problems.into_iter().map(|why| (m.ulid, why))),
                Err(e) => report
                    .index
                    .push((m.ulid, format!("reading the index: {e}"))),
            }
            p.inc();
        }
        p.finish();
    }
    Ok(report)
}
