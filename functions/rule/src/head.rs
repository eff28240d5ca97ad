//! The ruler's own storage: recorded series (and `ALERTS`) in memory, durable in
//! an append-only log in the data directory, served over the StoreAPI with the
//! ruler's labels as external labels, cut into TSDB blocks and shipped to the
//! bucket.
//!
//! - Appends are per batch (one evaluation of a group): one line of the log
//!   (`wal.jsonl`, JSON, values as IEEE bits so NaN staleness markers survive),
//!   fsynced before the samples become visible. A torn last line (crash while
//!   writing) is ignored at replay. A sample not after its series' last one is
//!   dropped, so replaying a tick cannot record twice.
//! - [`Head::cut_blocks`]: every aligned range `[k*D, (k+1)*D)` that is complete
//!   (a newer sample exists) and not cut yet becomes a block under
//!   `<data-dir>/blocks/<ULID>` with `thanos.labels` = the ruler's labels and
//!   `source: ruler`. Samples stay in memory (served) for the retention, then
//!   are dropped and the log is rewritten without them.
//! - [`ship_blocks`]: uploads finished blocks not yet uploaded (the sidecar's
//!   state file format, `thanos.shipper.json`, in the data directory).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use model::{Labels, Matcher};
use serde::{Deserialize, Serialize};
use storeapi::chunk::{raw_aggr_chunk, wire_chunk};
use storeapi::convert::{labels_to_pb, matchers_from_pb};
use storeapi::pb::{self, info as infopb};
use storeapi::{extlabels, series_frame, SeriesStream, StoreApi};
use tsdb::block::BlockWriter;
use tsdb::chunkenc::{Encoding, XorChunk};
use tsdb::meta::{BlockMeta, ThanosMeta};
use ulid::Ulid;

use crate::{Error, Result};

/// The `thanos.source` of the ruler's blocks.
pub const SOURCE: &str = "ruler";
const WAL_FILE: &str = "wal.jsonl";
const HEAD_STATE_FILE: &str = "head.json";
const BLOCKS_DIR: &str = "blocks";
const SHIPPER_FILE: &str = "thanos.shipper.json";
const SAMPLES_PER_CHUNK: usize = 120;

/// One logged sample: labels as `[name, value]` pairs, time, value bits.
type WalSample = (Vec<(String, String)>, i64, u64);

#[derive(Serialize, Deserialize)]
struct WalRecord {
    s: Vec<WalSample>,
}

#[derive(Serialize, Deserialize, Default)]
struct HeadState {
    /// Every range before this time is cut into blocks.
    cut_until: i64,
}

#[derive(Default)]
struct Inner {
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
    cut_until: i64,
    max_t: i64,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    pub appended: usize,
    /// Samples not after their series' last sample (duplicates of a replayed tick).
    pub out_of_order: usize,
}

/// The ruler's head. Cheap to share (`Arc`).
pub struct Head {
    dir: PathBuf,
    external_labels: Labels,
    block_duration_ms: i64,
    retention_ms: i64,
    inner: RwLock<Inner>,
    wal: Mutex<std::fs::File>,
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", p.display()))
}

impl Head {
    /// Opens (or creates) the head in `dir`, replaying its log.
    pub fn open(
        dir: &Path,
        external_labels: Labels,
        block_duration_ms: i64,
        retention_ms: i64,
    ) -> Result<Head> {
        if block_duration_ms <= 0 {
            return Err(Error::Config(
                "--tsdb.block-duration must be positive".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
        std::fs::create_dir_all(dir.join(BLOCKS_DIR))
            .map_err(|e| io_err("creating", &dir.join(BLOCKS_DIR), e))?;
        let state: HeadState = match std::fs::read(dir.join(HEAD_STATE_FILE)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Storage(format!("{}: {e}", dir.join(HEAD_STATE_FILE).display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HeadState::default(),
            Err(e) => return Err(io_err("reading", &dir.join(HEAD_STATE_FILE), e)),
        };
        let mut inner = Inner {
            cut_until: state.cut_until,
            max_t: i64::MIN,
            ..Default::default()
        };
        let wal_path = dir.join(WAL_FILE);
        let mut replayed = 0usize;
        match std::fs::File::open(&wal_path) {
            Ok(f) => {
                for line in std::io::BufReader::new(f).lines() {
                    let line = line.map_err(|e| io_err("reading", &wal_path, e))?;
                    let Ok(rec) = serde_json::from_str::<WalRecord>(&line) else {
                        tracing::warn!(file = %wal_path.display(), "ignoring a torn or corrupt log record");
                        continue;
                    };
                    for (l, t, bits) in rec.s {
                        apply(&mut inner, Labels::from_pairs(l), t, f64::from_bits(bits));
                        replayed += 1;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("opening", &wal_path, e)),
        }
        if replayed > 0 {
            tracing::info!(
                samples = replayed,
                series = inner.series.len(),
                "replayed the ruler's log"
            );
        }
        let wal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&wal_path)
            .map_err(|e| io_err("opening", &wal_path, e))?;
        Ok(Head {
            dir: dir.to_path_buf(),
            external_labels,
            block_duration_ms,
            retention_ms,
            inner: RwLock::new(inner),
            wal: Mutex::new(wal),
        })
    }

    pub fn external_labels(&self) -> &Labels {
        &self.external_labels
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends samples durably (log first, fsynced), then makes them visible.
    pub fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<AppendStats> {
        if samples.is_empty() {
            return Ok(AppendStats::default());
        }
        let mut wal = self
            .wal
            .lock()
            .map_err(|_| Error::Storage("log lock poisoned".into()))?;
        // Filter first so that the log holds only what is kept.
        let keep: Vec<&(Labels, i64, f64)> = {
            let inner = self
                .inner
                .read()
                .map_err(|_| Error::Storage("head lock poisoned".into()))?;
            let mut last: BTreeMap<&Labels, i64> = BTreeMap::new();
            samples
                .iter()
                .filter(|(l, t, _)| {
                    let prev = last
                        .get(l)
                        .copied()
                        .or_else(|| inner.series.get(l).and_then(|s| s.last()).map(|p| p.0));
                    let ok = prev.is_none_or(|p| *t > p) && *t >= inner.cut_until;
                    if ok {
                        last.insert(l, *t);
                    }
                    ok
                })
                .collect()
        };
        let stats = AppendStats {
            appended: keep.len(),
            out_of_order: samples.len() - keep.len(),
        };
        if keep.is_empty() {
            return Ok(stats);
        }
        let rec = WalRecord {
            s: keep
                .iter()
                .map(|(l, t, v)| {
                    (
                        l.iter()
                            .map(|x| (x.name.clone(), x.value.clone()))
                            .collect(),
                        *t,
                        v.to_bits(),
                    )
                })
                .collect(),
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| Error::Storage(e.to_string()))?;
        line.push(b'\n');
        let wal_path = self.dir.join(WAL_FILE);
        wal.write_all(&line)
            .map_err(|e| io_err("writing", &wal_path, e))?;
        wal.sync_data()
            .map_err(|e| io_err("syncing", &wal_path, e))?;
        let mut inner = self
            .inner
            .write()
            .map_err(|_| Error::Storage("head lock poisoned".into()))?;
        for (l, t, v) in keep {
            apply(&mut inner, l.clone(), *t, *v);
        }
        Ok(stats)
    }

    /// Number of series and samples in memory.
    pub fn stats(&self) -> (usize, usize) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (
            inner.series.len(),
            inner.series.values().map(Vec::len).sum(),
        )
    }

    /// The samples of every series (tests, debugging).
    pub fn snapshot(&self) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .series
            .iter()
            .map(|(l, s)| (l.clone(), s.clone()))
            .collect()
    }

    /// Cuts every complete, uncut aligned range into a block; drops samples past
    /// the retention (rewriting the log). Returns the new blocks' metas.
    pub fn cut_blocks(&self) -> Result<Vec<BlockMeta>> {
        let d = self.block_duration_ms;
        let mut metas = Vec::new();
        loop {
            let (range, data) = {
                let inner = self
                    .inner
                    .read()
                    .map_err(|_| Error::Storage("head lock poisoned".into()))?;
                let Some(min_t) = inner
                    .series
                    .values()
                    .flat_map(|s| s.iter().map(|p| p.0))
                    .filter(|t| *t >= inner.cut_until)
                    .min()
                else {
                    break;
                };
                let start = min_t.div_euclid(d) * d;
                let end = start + d;
                if inner.max_t < end {
                    break;
                }
                let data: Vec<(Labels, Vec<(i64, f64)>)> = inner
                    .series
                    .iter()
                    .filter_map(|(l, s)| {
                        let part: Vec<(i64, f64)> = s
                            .iter()
                            .filter(|p| p.0 >= start && p.0 < end)
                            .copied()
                            .collect();
                        (!part.is_empty()).then(|| (l.clone(), part))
                    })
                    .collect();
                ((start, end), data)
            };
            let blocks = self.dir.join(BLOCKS_DIR);
            let mut w = BlockWriter::create_with_ulid(&blocks, Ulid::new())
                .map_err(|e| Error::Storage(format!("starting a block: {e}")))?;
            for (l, s) in &data {
                w.add_series(l, s.iter().copied())
                    .map_err(|e| Error::Storage(format!("writing a block: {e}")))?;
            }
            let labels: BTreeMap<String, String> = self
                .external_labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let mut meta = w
                .finish(Some(ThanosMeta::new(SOURCE, labels)))
                .map_err(|e| Error::Storage(format!("finishing a block: {e}")))?;
            // The block covers the whole aligned range, as Prometheus's head blocks do.
            meta.min_time = range.0;
            meta.max_time = range.1;
            let bdir = blocks.join(meta.ulid.to_string());
            meta.write_dir(&bdir)
                .map_err(|e| Error::Storage(format!("writing meta.json: {e}")))?;
            tracing::info!(block = %meta.ulid, min_time = range.0, max_time = range.1,
                series = meta.stats.num_series, samples = meta.stats.num_samples, "cut a block");
            {
                let mut inner = self
                    .inner
                    .write()
                    .map_err(|_| Error::Storage("head lock poisoned".into()))?;
                inner.cut_until = range.1;
            }
            self.write_state(range.1)?;
            metas.push(meta);
        }
        if !metas.is_empty() {
            self.prune()?;
        }
        Ok(metas)
    }

    fn write_state(&self, cut_until: i64) -> Result<()> {
        let p = self.dir.join(HEAD_STATE_FILE);
        let tmp = self.dir.join(format!("{HEAD_STATE_FILE}.tmp"));
        let b = serde_json::to_vec(&HeadState { cut_until })
            .map_err(|e| Error::Storage(e.to_string()))?;
        write_synced(&tmp, &b)?;
        std::fs::rename(&tmp, &p).map_err(|e| io_err("renaming", &tmp, e))
    }

    /// Drops cut samples older than the retention and rewrites the log.
    fn prune(&self) -> Result<()> {
        let mut wal = self
            .wal
            .lock()
            .map_err(|_| Error::Storage("log lock poisoned".into()))?;
        let mut inner = self
            .inner
            .write()
            .map_err(|_| Error::Storage("head lock poisoned".into()))?;
        let horizon = inner
            .cut_until
            .min(inner.max_t.saturating_sub(self.retention_ms));
        let mut dropped = 0;
        for s in inner.series.values_mut() {
            let n = s.len();
            s.retain(|p| p.0 >= horizon);
            dropped += n - s.len();
        }
        inner.series.retain(|_, s| !s.is_empty());
        if dropped == 0 {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{WAL_FILE}.tmp"));
        let mut buf = Vec::new();
        for (l, s) in &inner.series {
            let rec = WalRecord {
                s: s.iter()
                    .map(|(t, v)| {
                        (
                            l.iter()
                                .map(|x| (x.name.clone(), x.value.clone()))
                                .collect(),
                            *t,
                            v.to_bits(),
                        )
                    })
                    .collect(),
            };
            buf.extend(serde_json::to_vec(&rec).map_err(|e| Error::Storage(e.to_string()))?);
            buf.push(b'\n');
        }
        write_synced(&tmp, &buf)?;
        let p = self.dir.join(WAL_FILE);
        std::fs::rename(&tmp, &p).map_err(|e| io_err("renaming", &tmp, e))?;
        *wal = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(|e| io_err("opening", &p, e))?;
        tracing::debug!(dropped, "dropped samples past the retention");
        Ok(())
    }

    /// Series with a sample in `[mint, maxt]` matching `matchers` (matched against
    /// the labels with the external labels attached).
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(Labels, Vec<(i64, f64)>)> = inner
            .series
            .iter()
            .filter_map(|(l, s)| {
                let full = extlabels::attach(l, &self.external_labels);
                if !matchers
                    .iter()
                    .all(|m| m.matches(full.get(m.name()).unwrap_or("")))
                {
                    return None;
                }
                let part: Vec<(i64, f64)> = s
                    .iter()
                    .filter(|p| p.0 >= mint && p.0 <= maxt)
                    .copied()
                    .collect();
                (!part.is_empty()).then_some((full, part))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn time_range(&self) -> (i64, i64) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut min = i64::MAX;
        for s in inner.series.values() {
            if let Some(p) = s.first() {
                min = min.min(p.0);
            }
        }
        if min == i64::MAX {
            // Nothing yet: advertise "now onwards" so that queriers still ask.
            (i64::MAX, i64::MAX)
        } else {
            (min, i64::MAX)
        }
    }
}

fn apply(inner: &mut Inner, l: Labels, t: i64, v: f64) {
    if t < inner.cut_until {
        return;
    }
    let s = inner.series.entry(l).or_default();
    if s.last().is_some_and(|p| p.0 >= t) {
        return;
    }
    s.push((t, v));
    inner.max_t = inner.max_t.max(t);
}

fn write_synced(p: &Path, b: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(p).map_err(|e| io_err("creating", p, e))?;
    f.write_all(b).map_err(|e| io_err("writing", p, e))?;
    f.sync_all().map_err(|e| io_err("syncing", p, e))
}

fn chunks_of(samples: &[(i64, f64)]) -> Vec<pb::AggrChunk> {
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|part| {
            let mut x = XorChunk::new();
            for &(t, v) in part {
                x.append(t, v);
            }
            raw_aggr_chunk(
                part[0].0,
                part[part.len() - 1].0,
                wire_chunk(Encoding::Xor, x.bytes().to_vec(), true),
            )
        })
        .collect()
}

fn limit(n: i64) -> usize {
    if n > 0 {
        usize::try_from(n).unwrap_or(usize::MAX)
    } else {
        usize::MAX
    }
}

#[async_trait::async_trait]
impl StoreApi for Head {
    async fn info(&self) -> storeapi::Result<infopb::InfoResponse> {
        let (min, max) = self.time_range();
        let sets = if self.external_labels.is_empty() {
            vec![]
        } else {
            vec![self.external_labels.clone()]
        };
        let mut info = storeapi::store_info_response("rule", &sets, min, max);
        if let Some(store) = info.store.as_mut() {
            store.supports_without_replica_labels = true;
            store.tsdb_infos = vec![infopb::TsdbInfo {
                labels: Some(storeapi::convert::zlabel_set(&self.external_labels)),
                min_time: min,
                max_time: max,
            }];
        }
        info.rules = Some(Default::default());
        Ok(info)
    }

    async fn series(&self, req: pb::SeriesRequest) -> storeapi::Result<SeriesStream> {
        let matchers = matchers_from_pb(&req.matchers)?;
        let strip: Vec<&str> = req
            .without_replica_labels
            .iter()
            .map(String::as_str)
            .collect();
        let mut out: Vec<(Labels, Vec<pb::AggrChunk>)> = self
            .select(&matchers, req.min_time, req.max_time)
            .into_iter()
            .map(|(l, s)| {
                let chunks = if req.skip_chunks {
                    vec![]
                } else {
                    chunks_of(&s)
                };
                (extlabels::strip(&l, &strip), chunks)
            })
            .collect();
        if !strip.is_empty() {
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out.dedup_by(|b, a| {
                if a.0 != b.0 {
                    return false;
                }
                a.1.append(&mut b.1);
                a.1 = storeapi::merge::merge_chunks(std::mem::take(&mut a.1));
                true
            });
        }
        out.truncate(limit(req.limit));
        let frames: Vec<storeapi::Result<pb::SeriesResponse>> = out
            .into_iter()
            .map(|(l, chunks)| {
                Ok(series_frame(pb::Series {
                    labels: labels_to_pb(&l),
                    chunks,
                }))
            })
            .collect();
        Ok(futures::stream::iter(frames).boxed())
    }

    async fn label_names(
        &self,
        req: pb::LabelNamesRequest,
    ) -> storeapi::Result<pb::LabelNamesResponse> {
        let matchers = matchers_from_pb(&req.matchers)?;
        let names: BTreeSet<String> = self
            .select(&matchers, req.start, req.end)
            .into_iter()
            .flat_map(|(l, _)| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .filter(|n| !req.without_replica_labels.contains(n))
            .collect();
        Ok(pb::LabelNamesResponse {
            names: names.into_iter().take(limit(req.limit)).collect(),
            ..Default::default()
        })
    }

    async fn label_values(
        &self,
        req: pb::LabelValuesRequest,
    ) -> storeapi::Result<pb::LabelValuesResponse> {
        if req.label.is_empty() {
            return Err(storeapi::Error::InvalidArgument(
                "label name is empty".into(),
            ));
        }
        let matchers = matchers_from_pb(&req.matchers)?;
        if req.without_replica_labels.contains(&req.label) {
            return Ok(pb::LabelValuesResponse::default());
        }
        let values: BTreeSet<String> = self
            .select(&matchers, req.start, req.end)
            .into_iter()
            .filter_map(|(l, _)| l.get(&req.label).map(str::to_string))
            .collect();
        Ok(pb::LabelValuesResponse {
            values: values.into_iter().take(limit(req.limit)).collect(),
            ..Default::default()
        })
    }
}

// ---------------------------------------------------------------------------
// Shipping.

#[derive(Serialize, Deserialize)]
struct ShipperState {
    version: u32,
    #[serde(default)]
    uploaded: Vec<Ulid>,
}

/// Uploads every finished block in `<data-dir>/blocks` not yet recorded in
/// `thanos.shipper.json` (a block already complete in the bucket is only
/// recorded). Returns the uploaded blocks; a failed block is retried next time.
pub async fn ship_blocks(
    dir: &Path,
    store: &Arc<dyn bucket::object_store::ObjectStore>,
) -> Result<Vec<Ulid>> {
    let state_path = dir.join(SHIPPER_FILE);
    let mut state: ShipperState = match std::fs::read(&state_path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(file = %state_path.display(), error = %e, "unreadable shipper state; asking the bucket about every block");
            ShipperState { version: 1, uploaded: Vec::new() }
        }),
        Err(_) => ShipperState { version: 1, uploaded: Vec::new() },
    };
    let blocks = dir.join(BLOCKS_DIR);
    let mut ids: Vec<Ulid> = match std::fs::read_dir(&blocks) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| Ulid::from_string(n).ok())
            })
            .filter(|id| blocks.join(id.to_string()).join("meta.json").exists())
            .collect(),
        Err(e) => return Err(io_err("reading", &blocks, e)),
    };
    ids.sort();
    let mut uploaded = Vec::new();
    for id in ids {
        if state.uploaded.contains(&id) {
            continue;
        }
        let bdir = blocks.join(id.to_string());
        let done = match bucket::block_exists_complete(&**store, id).await {
            Ok(true) => true,
            Ok(false) => match bucket::upload_block(&**store, &bdir, None).await {
                Ok(_) => {
                    uploaded.push(id);
                    true
                }
                Err(e) => {
                    tracing::error!(block = %id, error = %e, "uploading block failed; retrying later");
                    false
                }
            },
            Err(e) => {
                tracing::error!(block = %id, error = %e, "checking the bucket failed; retrying later");
                false
            }
        };
        if done {
            state.uploaded.push(id);
            let tmp = dir.join(format!("{SHIPPER_FILE}.tmp"));
            let b = serde_json::to_vec_pretty(&state).map_err(|e| Error::Storage(e.to_string()))?;
            write_synced(&tmp, &b)?;
            std::fs::rename(&tmp, &state_path).map_err(|e| io_err("renaming", &tmp, e))?;
        }
    }
    Ok(uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name)])
    }

    #[tokio::test]
    async fn append_replay_dedup_and_serve() {
        let dir = tempfile::tempdir().unwrap();
        let ext = Labels::from_pairs([("replica", "r0")]);
        let h = Head::open(dir.path(), ext.clone(), 10_000, 3_600_000).unwrap();
        let s = h
            .append(&[
                (l("a"), 1000, 1.0),
                (l("a"), 2000, 2.0),
                (l("b"), 1000, f64::from_bits(model::STALE_NAN_BITS)),
            ])
            .unwrap();
        assert_eq!(
            s,
            AppendStats {
                appended: 3,
                out_of_order: 0
            }
        );
        // The same tick again: nothing new.
        let s = h.append(&[(l("a"), 2000, 2.0)]).unwrap();
        assert_eq!(
            s,
            AppendStats {
                appended: 0,
                out_of_order: 1
            }
        );
        drop(h);
        let h = Head::open(dir.path(), ext, 10_000, 3_600_000).unwrap();
        let snap = h.snapshot();
        assert_eq!(snap[0].1, vec![(1000, 1.0), (2000, 2.0)]);
        assert!(model::is_stale_nan(snap[1].1[0].1));
        // Served over the StoreAPI with the external labels.
        let req = pb::SeriesRequest {
            min_time: 0,
            max_time: 5000,
            matchers: storeapi::convert::matchers_to_pb(&[
                Matcher::equal("replica", "r0"),
                Matcher::equal("__name__", "a"),
            ]),
            ..Default::default()
        };
        let (series, _) = storeapi::collect_series(h.series(req).await.unwrap())
            .await
            .unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(
            storeapi::convert::labels_from_pb(&series[0].labels),
            Labels::from_pairs([("__name__", "a"), ("replica", "r0")])
        );
        let info = h.info().await.unwrap();
        assert_eq!(info.component_type, "rule");
        assert_eq!(info.store.unwrap().min_time, 1000);
    }

    #[tokio::test]
    async fn cuts_complete_ranges_into_blocks_and_ships_them() {
        let dir = tempfile::tempdir().unwrap();
        let ext = Labels::from_pairs([("replica", "r0")]);
        let h = Head::open(dir.path(), ext.clone(), 10_000, 0).unwrap();
        h.append(&[(l("a"), 1000, 1.0), (l("a"), 9000, 2.0)])
            .unwrap();
        assert!(h.cut_blocks().unwrap().is_empty(), "range not complete yet");
        h.append(&[(l("a"), 12_000, 3.0)]).unwrap();
        let metas = h.cut_blocks().unwrap();
        assert_eq!(metas.len(), 1);
        let m = &metas[0];
        assert_eq!((m.min_time, m.max_time), (0, 10_000));
        assert_eq!(m.stats.num_samples, 2);
        let t = m.thanos.as_ref().unwrap();
        assert_eq!(t.source, "ruler");
        assert_eq!(
            t.labels,
            BTreeMap::from([("replica".to_string(), "r0".to_string())])
        );
        // Cut samples past the retention are gone from memory and from the log;
        // samples in the cut range are refused afterwards.
        assert_eq!(h.snapshot()[0].1, vec![(12_000, 3.0)]);
        assert_eq!(h.append(&[(l("c"), 5000, 1.0)]).unwrap().appended, 0);
        drop(h);
        let h = Head::open(dir.path(), ext, 10_000, 0).unwrap();
        assert_eq!(h.snapshot()[0].1, vec![(12_000, 3.0)]);
        assert!(h.cut_blocks().unwrap().is_empty());
        // The block reads back.
        let b = tsdb::block::Block::open_local(&dir.path().join("blocks").join(m.ulid.to_string()))
            .await
            .unwrap();
        assert_eq!(b.meta().stats.num_series, 1);
        // Shipping: uploaded once, recorded.
        let bdir = tempfile::tempdir().unwrap();
        let store = bucket::ObjstoreConfig::filesystem(bdir.path())
            .build()
            .unwrap();
        assert_eq!(ship_blocks(dir.path(), &store).await.unwrap(), vec![m.ulid]);
        assert!(ship_blocks(dir.path(), &store).await.unwrap().is_empty());
        assert!(bucket::block_exists_complete(&*store, m.ulid)
            .await
            .unwrap());
    }
}
