//! Recorded samples kept in the bucket, for a ruler with no disk of its own
//! (one tick per Lambda invocation): each tick's samples are written as a
//! small *pending* object, and once a block range has closed, one tick turns
//! that range's pending objects into a TSDB block (the ruler's labels,
//! `source: ruler`) and deletes them.
//!
//! Layout, under the ruler's prefix `aether/rule/<hash of labels>/`:
//! `pending/<range start ms>/<sample ms>-<ULID>.json`, JSON lines of
//! `[labels, t, f64 bits]`.
//!
//! Crash safety: a block's ULID is derived from its range and the ruler's
//! labels, so a cut that is interrupted after uploading and before deleting
//! the pending objects uploads the same block again (same ULID, same bytes)
//! the next time; the pending objects are deleted only after the block is
//! complete in the bucket. Samples written twice (a tick that lost the state
//! race after writing) are deduplicated by (series, timestamp) at the cut.
//!
//! Freshness: pending samples reach queries when their block is cut (one
//! block range, 2 h by default, plus `grace`); a long-lived ruler serves them
//! at once from its head instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bucket::object_store::path::Path as ObjPath;
use bucket::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use futures::TryStreamExt;
use model::Labels;
use serde::{Deserialize, Serialize};
use tsdb::block::BlockWriter;
use tsdb::meta::ThanosMeta;
use ulid::Ulid;

use crate::head::AppendStats;
use crate::ruler::SampleSink;
use crate::{Error, Result};

/// The source recorded in the blocks' `meta.json`.
const SOURCE: &str = "ruler";

#[derive(Serialize, Deserialize)]
struct Record(Vec<(String, String)>, i64, u64);

fn storage(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what}: {e}"))
}

/// The ruler's pending samples in the bucket.
#[derive(Clone)]
pub struct BucketSink {
    store: Arc<dyn ObjectStore>,
    labels: Labels,
    prefix: String,
    block_duration_ms: i64,
}

impl BucketSink {
    /// Pending samples of the ruler with `labels`, cut into blocks of
    /// `block_duration_ms`.
    pub fn new(store: Arc<dyn ObjectStore>, labels: Labels, block_duration_ms: i64) -> Self {
        let prefix = format!("{}/pending", crate::ruler::ruler_prefix(&labels));
        BucketSink {
            store,
            labels,
            prefix,
            block_duration_ms: block_duration_ms.max(1),
        }
    }

    /// Writes `samples` as pending objects (one per block range touched).
    pub async fn write(&self, samples: &[(Labels, i64, f64)]) -> Result<usize> {
        let d = self.block_duration_ms;
        let mut by_range: BTreeMap<i64, (i64, String)> = BTreeMap::new();
        for (l, t, v) in samples {
            let range = t.div_euclid(d) * d;
            let e = by_range.entry(range).or_insert((*t, String::new()));
            e.0 = e.0.min(*t);
            let pairs = l
                .iter()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect();
            let line = serde_json::to_string(&Record(pairs, *t, v.to_bits()))
                .map_err(|e| storage("encoding samples", e))?;
            e.1.push_str(&line);
            e.1.push('\n');
        }
        for (range, (t, body)) in by_range {
            let key = ObjPath::from(format!("{}/{range}/{t}-{}.json", self.prefix, Ulid::new()));
            self.store
                .put(&key, PutPayload::from(body.into_bytes()))
                .await
                .map_err(|e| storage(&format!("writing {key}"), e))?;
        }
        Ok(samples.len())
    }

    /// Block ranges with pending samples.
    async fn ranges(&self) -> Result<Vec<i64>> {
        let prefix = ObjPath::from(self.prefix.as_str());
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| storage(&format!("listing {prefix}"), e))?;
        let mut out: Vec<i64> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|f| f.parse().ok()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Cuts every block range that ended at least `grace_ms` before `now_ms`
    /// into a block in the bucket (built under `tmp`), then deletes its
    /// pending objects. Returns the blocks uploaded.
    pub async fn cut(&self, now_ms: i64, grace_ms: i64, tmp: &Path) -> Result<Vec<Ulid>> {
        let mut out = Vec::new();
        for range in self.ranges().await? {
            if range + self.block_duration_ms + grace_ms > now_ms {
                continue;
            }
            out.push(self.cut_range(range, tmp).await?);
        }
        Ok(out)
    }

    async fn cut_range(&self, range: i64, tmp: &Path) -> Result<Ulid> {
        let (ulid, objects) = self.upload_range(range, tmp).await?;
        for o in objects {
            if let Err(e) = self.store.delete(&o).await {
                tracing::warn!(object = %o, error = %e, "deleting a pending object failed; the next cut deletes it");
            }
        }
        Ok(ulid)
    }

    /// Uploads the block of `range` unless it is complete in the bucket
    /// already (a cut interrupted before its deletes); returns it and the
    /// pending objects it holds.
    async fn upload_range(&self, range: i64, tmp: &Path) -> Result<(Ulid, Vec<ObjPath>)> {
        // The same range and ruler always make the same ULID.
        let ulid = Ulid::from_parts(
            range as u64,
            u128::from(crate::ruler::labels_hash(&self.labels)),
        );
        let prefix = ObjPath::from(format!("{}/{range}", self.prefix));
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| storage(&format!("listing {prefix}"), e))?;
        let complete = bucket::block_exists_complete(&*self.store, ulid)
            .await
            .map_err(|e| storage(&format!("checking block {ulid}"), e))?;
        if complete {
            // Samples only arrive at tick time, so none can have joined the
            // range since its block was cut (the grace covers late ticks).
            let keys = objects.into_iter().map(|o| o.location).collect();
            return Ok((ulid, keys));
        }
        let mut series: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
        for o in &objects {
            let bytes = self
                .store
                .get(&o.location)
                .await
                .map_err(|e| storage(&format!("reading {}", o.location), e))?
                .bytes()
                .await
                .map_err(|e| storage(&format!("reading {}", o.location), e))?;
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let Ok(Record(pairs, t, bits)) = serde_json::from_slice::<Record>(line) else {
                    tracing::warn!(object = %o.location, "skipping an unreadable pending record");
                    continue;
                };
                series
                    .entry(Labels::from_pairs(pairs))
                    .or_default()
                    .insert(t, f64::from_bits(bits));
            }
        }
        let keys: Vec<ObjPath> = objects.into_iter().map(|o| o.location).collect();
        std::fs::create_dir_all(tmp).map_err(|e| storage(&tmp.display().to_string(), e))?;
        let bdir = tmp.join(ulid.to_string());
        let _ = std::fs::remove_dir_all(&bdir);
        let mut w =
            BlockWriter::create_with_ulid(tmp, ulid).map_err(|e| storage("starting a block", e))?;
        for (l, s) in &series {
            w.add_series(l, s.iter().map(|(t, v)| (*t, *v)))
                .map_err(|e| storage("writing a block", e))?;
        }
        let labels: BTreeMap<String, String> = self
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let mut meta = w
            .finish(Some(ThanosMeta::new(SOURCE, labels)))
            .map_err(|e| storage("finishing a block", e))?;
        meta.min_time = range;
        meta.max_time = range + self.block_duration_ms;
        meta.write_dir(&bdir)
            .map_err(|e| storage("writing meta.json", e))?;
        bucket::upload_block(&*self.store, &bdir, Some(&meta))
            .await
            .map_err(|e| storage(&format!("uploading block {ulid}"), e))?;
        let _ = std::fs::remove_dir_all(&bdir);
        tracing::info!(block = %ulid, range, series = series.len(), "cut the ruler's pending samples into a block");
        Ok((ulid, keys))
    }
}

impl SampleSink for BucketSink {
    /// Writes through to the bucket. Called from a tick on a multi-threaded
    /// Tokio runtime (the Lambda entry point's), which it briefly blocks.
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<AppendStats> {
        if samples.is_empty() {
            return Ok(AppendStats::default());
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Storage("the bucket sink needs a Tokio runtime".into()))?;
        let appended = tokio::task::block_in_place(|| handle.block_on(self.write(samples)))?;
        Ok(AppendStats {
            appended,
            out_of_order: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bucket::object_store::memory::InMemory;

    fn l(v: &str) -> Labels {
        Labels::from_pairs([("__name__", "job:up:sum"), ("job", v)])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_samples_become_one_block_per_range_exactly_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let ruler = Labels::from_pairs([("replica", "r0")]);
        let h = 3_600_000;
        let sink = BucketSink::new(Arc::clone(&store), ruler.clone(), 2 * h);
        // Ticks every minute over 3 h; one tick written twice (a lost race).
        for m in 0..180i64 {
            let t = m * 60_000;
            let s = vec![(l("a"), t, m as f64), (l("b"), t, 2.0 * m as f64)];
            sink.append(&s).unwrap();
            if m == 30 {
                sink.append(&s).unwrap();
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        // At 3 h only [0, 2h) has closed (grace 5m).
        let cut = sink.cut(3 * h, 300_000, tmp.path()).await.unwrap();
        assert_eq!(cut.len(), 1);
        let metas = bucket::list_block_metas(&*store).await.unwrap().metas;
        assert_eq!(metas.len(), 1);
        let m = &metas[0];
        assert_eq!((m.min_time, m.max_time), (0, 2 * h));
        assert_eq!(m.stats.num_series, 2);
        assert_eq!(m.stats.num_samples, 240, "deduplicated by timestamp");
        let th = m.thanos.as_ref().unwrap();
        assert_eq!(th.source, "ruler");
        assert_eq!(th.labels.get("replica").map(String::as_str), Some("r0"));
        // Nothing left pending for that range; a second cut does nothing.
        assert_eq!(sink.ranges().await.unwrap(), vec![2 * h]);
        assert!(sink
            .cut(3 * h, 300_000, tmp.path())
            .await
            .unwrap()
            .is_empty());
        // A cut interrupted after the upload, before the deletes: the retry
        // keeps the block as is (no second block, nothing lost) and only
        // deletes the pending objects.
        let (ulid, _) = sink.upload_range(2 * h, tmp.path()).await.unwrap();
        let before = bucket::list_block_metas(&*store).await.unwrap().metas;
        assert_eq!(before.len(), 2);
        assert_eq!(sink.cut(5 * h, 0, tmp.path()).await.unwrap(), vec![ulid]);
        assert!(sink.ranges().await.unwrap().is_empty());
        let after = bucket::list_block_metas(&*store).await.unwrap().metas;
        assert_eq!(after.len(), 2);
        let m = after.iter().find(|m| m.ulid == ulid).unwrap();
        assert_eq!(m.stats.num_samples, 120);
    }
}
