//! The bucket index: one small object listing the bucket's blocks, so a cold reader
//! makes one GET instead of listing the bucket and fetching every `meta.json`.
//!
//! It lives at [`BUCKET_INDEX_PATH`] (`aether/bucket-index.json`): not a ULID, so
//! Thanos (which lists blocks as `<ULID>/meta.json`) ignores it. It is derived data:
//! anyone may rebuild it from the bucket at any time, and losing it costs one
//! listing.
//!
//! **Updating** ([`update`]) is incremental: one recursive LIST of the bucket tells
//! which blocks exist, which are complete, which carry a deletion mark and the sizes
//! of their files; only blocks new since the previous index cost a `meta.json` GET,
//! and only newly marked ones a `deletion-mark.json` GET.
//!
//! **Writing** ([`write`]) is a conditional PUT: `If-Match` the ETag read (or
//! `If-None-Match: *` when there was none). A 412 means another instance wrote a
//! newer index in between; since both are snapshots of the same bucket, the loser
//! simply keeps its in-memory copy and does not retry. Backends without conditional
//! writes overwrite (still harmless for the same reason).
//!
//! **Reading** ([`sync`]): a reader takes the stored index when it is younger than a
//! bound; when it is missing, unreadable or older, the reader lists the bucket
//! itself (and says so in the outcome and the log) and writes the result back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tsdb::meta::{BlockMeta, FileEntry, ThanosMeta, META_FILENAME};
use ulid::Ulid;

use crate::block::{fetch_meta, META_FETCH_CONCURRENCY};
use crate::markers::{read_deletion_mark, DELETION_MARK_FILENAME};
use crate::{Error, Result};

/// Where the bucket index lives.
pub const BUCKET_INDEX_PATH: &str = "aether/bucket-index.json";
/// Version of the bucket index format.
pub const BUCKET_INDEX_VERSION: u32 = 1;

/// A file of a block with its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedFile {
    pub rel_path: String,
    pub size_bytes: u64,
}

/// One block as the bucket index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedBlock {
    pub ulid: Ulid,
    pub min_time: i64,
    /// Exclusive, as in meta.json.
    pub max_time: i64,
    /// External labels (`thanos.labels`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Downsampling resolution in ms (0 = raw).
    #[serde(default)]
    pub resolution: i64,
    #[serde(default)]
    pub compaction_level: u32,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub num_series: u64,
    #[serde(default)]
    pub num_samples: u64,
    /// `deletion_time` (unix seconds) of the block's deletion mark, if marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_time: Option<i64>,
    /// `index`, `chunks/NNNNNN` and `tombstones` with their sizes, as listed.
    #[serde(default)]
    pub files: Vec<IndexedFile>,
    /// `compaction.sources`: the level-1 blocks whose data this block holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
}

impl IndexedBlock {
    /// The entry of a block from its meta (files from the meta's `thanos.files`).
    pub fn from_meta(meta: &BlockMeta) -> IndexedBlock {
        let t = meta.thanos.as_ref();
        IndexedBlock {
            ulid: meta.ulid,
            min_time: meta.min_time,
            max_time: meta.max_time,
            labels: t.map(|t| t.labels.clone()).unwrap_or_default(),
            resolution: meta.resolution(),
            compaction_level: meta.compaction.level,
            source: t.map(|t| t.source.clone()).unwrap_or_default(),
            num_series: meta.stats.num_series,
            num_samples: meta.stats.num_samples,
            deletion_time: None,
            sources: meta.compaction.sources.clone(),
            files: t
                .map(|t| {
                    t.files
                        .iter()
                        .filter(|f| f.rel_path != META_FILENAME && f.size_bytes > 0)
                        .map(|f| IndexedFile {
                            rel_path: f.rel_path.clone(),
                            size_bytes: f.size_bytes,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// A meta good enough to read the block ([`crate::open_block`]): ULID, times,
    /// level, external labels, resolution and `thanos.files`.
    pub fn to_meta(&self) -> BlockMeta {
        let mut m = BlockMeta::new(self.ulid, self.min_time, self.max_time);
        m.compaction.level = self.compaction_level.max(1);
        m.stats.num_series = self.num_series;
        m.stats.num_samples = self.num_samples;
        let mut t = ThanosMeta::new(&self.source, self.labels.clone());
        t.downsample.resolution = self.resolution;
        t.files = self
            .files
            .iter()
            .map(|f| FileEntry {
                rel_path: f.rel_path.clone(),
                size_bytes: f.size_bytes,
                hash: None,
            })
            .collect();
        m.thanos = Some(t);
        m
    }

    /// Whether the block has a `tombstones` file.
    pub fn has_tombstones(&self) -> bool {
        self.files.iter().any(|f| f.rel_path == "tombstones")
    }
}

/// The bucket index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketIndex {
    pub version: u32,
    /// When it was last brought up to date with the bucket (unix ms).
    pub updated_at: i64,
    /// Complete blocks, sorted by ULID.
    pub blocks: Vec<IndexedBlock>,
    /// Block directories without meta.json at the last update.
    #[serde(default)]
    pub partial: Vec<Ulid>,
    /// Blocks whose meta.json did not parse, with the reason.
    #[serde(default)]
    pub corrupted: Vec<(Ulid, String)>,
}

impl Default for BucketIndex {
    fn default() -> Self {
        BucketIndex {
            version: BUCKET_INDEX_VERSION,
            updated_at: 0,
            blocks: Vec::new(),
            partial: Vec::new(),
            corrupted: Vec::new(),
        }
    }
}

impl BucketIndex {
    /// Age relative to now (zero if `updated_at` is in the future).
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.updated_at).max(0) as u64)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(b: &[u8]) -> std::result::Result<BucketIndex, String> {
        let idx: BucketIndex = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        if idx.version != BUCKET_INDEX_VERSION {
            return Err(format!("unsupported bucket index version {}", idx.version));
        }
        Ok(idx)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn index_key() -> Path {
    Path::from(BUCKET_INDEX_PATH)
}

/// A stored index with the version to update it conditionally.
#[derive(Debug, Clone)]
pub struct Stored {
    pub index: BucketIndex,
    pub version: UpdateVersion,
}

/// Reads the stored bucket index: `Ok(None)` when absent or unreadable (a bad
/// object is logged and treated as missing: it is rebuilt).
pub async fn load(store: &dyn ObjectStore) -> Result<Option<Stored>> {
    let key = index_key();
    let r = match store.get(&key).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store("GET", store.to_string(), key.to_string(), e)),
    };
    let version = UpdateVersion {
        e_tag: r.meta.e_tag.clone(),
        version: r.meta.version.clone(),
    };
    let b = r
        .bytes()
        .await
        .map_err(|e| Error::store("GET", store.to_string(), key.to_string(), e))?;
    match BucketIndex::from_json(&b) {
        Ok(index) => Ok(Some(Stored { index, version })),
        Err(e) => {
            tracing::warn!(error = %e, key = BUCKET_INDEX_PATH, "bucket index does not parse; rebuilding it");
            Ok(None)
        }
    }
}

/// What listing the bucket found for one block directory.
#[derive(Default)]
struct Listed {
    has_meta: bool,
    has_deletion_mark: bool,
    files: Vec<IndexedFile>,
}

/// Brings `prev` (or nothing) up to date with the bucket: one recursive LIST, a
/// meta.json GET per block not in `prev`, a deletion-mark GET per block newly
/// marked. Corrupt metas are recorded, not errors; request failures are errors.
pub async fn update(store: &dyn ObjectStore, prev: Option<&BucketIndex>) -> Result<BucketIndex> {
    let started = now_ms();
    let listing: Vec<object_store::ObjectMeta> = store
        .list(None)
        .try_collect()
        .await
        .map_err(|e| Error::store("LIST", store.to_string(), "", e))?;
    let mut dirs: BTreeMap<Ulid, Listed> = BTreeMap::new();
    for o in listing {
        let parts: Vec<String> = o.location.parts().map(|p| p.as_ref().to_string()).collect();
        let Some(first) = parts.first() else { continue };
        let Ok(id) = Ulid::from_string(first) else {
            continue;
        };
        if id.to_string() != *first || parts.len() < 2 {
            continue;
        }
        let d = dirs.entry(id).or_default();
        let rel = parts[1..].join("/");
        match rel.as_str() {
            META_FILENAME => d.has_meta = true,
            DELETION_MARK_FILENAME => d.has_deletion_mark = true,
            "index" | "tombstones" => d.files.push(IndexedFile {
                rel_path: rel,
                size_bytes: o.size,
            }),
            r if r.starts_with("chunks/") => d.files.push(IndexedFile {
                rel_path: rel,
                size_bytes: o.size,
            }),
            _ => {}
        }
    }

    let known: HashMap<Ulid, &IndexedBlock> = prev
        .map(|p| p.blocks.iter().map(|b| (b.ulid, b)).collect())
        .unwrap_or_default();
    let mut out = BucketIndex::default();
    let mut to_fetch = Vec::new();
    for (id, d) in &dirs {
        if !d.has_meta {
            out.partial.push(*id);
        } else if !known.contains_key(id) {
            to_fetch.push(*id);
        }
    }
    let fetched: Vec<(Ulid, Result<Option<BlockMeta>>)> = stream::iter(to_fetch)
        .map(|id| async move { (id, fetch_meta(store, id).await) })
        .buffer_unordered(META_FETCH_CONCURRENCY)
        .collect()
        .await;
    let mut fresh: HashMap<Ulid, IndexedBlock> = HashMap::new();
    for (id, r) in fetched {
        match r {
            Ok(Some(m)) => {
                fresh.insert(id, IndexedBlock::from_meta(&m));
            }
            // Deleted between the listing and the GET.
            Ok(None) => out.partial.push(id),
            Err(Error::InvalidObject { reason, .. }) => out.corrupted.push((id, reason)),
            Err(e) => return Err(e),
        }
    }

    let mut need_mark = Vec::new();
    for (id, d) in &dirs {
        if !d.has_meta {
            continue;
        }
        let mut b = match (known.get(id), fresh.remove(id)) {
            (_, Some(b)) => b,
            (Some(b), None) => (*b).clone(),
            (None, None) => continue,
        };
        // The listing is the truth for sizes; keep meta-only entries it lacks.
        if !d.files.is_empty() {
            b.files = d.files.clone();
            b.files.sort_by(|a, c| a.rel_path.cmp(&c.rel_path));
        }
        if !d.has_deletion_mark {
            b.deletion_time = None;
        } else if b.deletion_time.is_none() {
            need_mark.push(*id);
        }
        out.blocks.push(b);
    }
    let marks: Vec<(Ulid, Option<i64>)> = stream::iter(need_mark)
        .map(|id| async move {
            let t = match read_deletion_mark(store, id).await {
                Ok(Some(m)) => Some(m.deletion_time),
                Ok(None) => None,
                // A mark that does not parse still marks the block.
                Err(_) => Some(started / 1000),
            };
            (id, t)
        })
        .buffer_unordered(META_FETCH_CONCURRENCY)
        .collect()
        .await;
    let marks: HashMap<Ulid, Option<i64>> = marks.into_iter().collect();
    for b in &mut out.blocks {
        if let Some(t) = marks.get(&b.ulid) {
            b.deletion_time = *t;
        }
    }
    out.blocks.sort_by_key(|b| b.ulid);
    out.partial.sort();
    out.corrupted.sort();
    out.updated_at = started;
    Ok(out)
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// Another instance updated the index since it was read (412): ours is not
    /// written, theirs is as good.
    LostRace,
}

/// Writes `index`, conditionally on the stored version being `expected` (the one
/// read), or on there being none.
pub async fn write(
    store: &dyn ObjectStore,
    index: &BucketIndex,
    expected: Option<UpdateVersion>,
) -> Result<WriteOutcome> {
    let key = index_key();
    let payload = PutPayload::from(index.to_json());
    let mode = match expected {
        Some(v) if v.e_tag.is_some() || v.version.is_some() => PutMode::Update(v),
        Some(_) => PutMode::Overwrite,
        None => PutMode::Create,
    };
    match store
        .put_opts(&key, payload.clone(), PutOptions::from(mode))
        .await
    {
        Ok(_) => Ok(WriteOutcome::Written),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(WriteOutcome::LostRace),
        Err(object_store::Error::NotImplemented { .. }) => store
            .put(&key, payload)
            .await
            .map(|_| WriteOutcome::Written)
            .map_err(|e| Error::store("PUT", store.to_string(), key.to_string(), e)),
        Err(e) => Err(Error::store("PUT", store.to_string(), key.to_string(), e)),
    }
}

/// How [`sync`] got its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The stored index was fresh enough: one GET.
    Loaded { age: Duration },
    /// No usable stored index: the bucket was listed and the result written back.
    ListedMissing,
    /// The stored index was older than the bound: updated by listing, written back.
    ListedStale { age: Duration },
}

impl SyncOutcome {
    /// Whether the bucket had to be listed.
    pub fn listed(&self) -> bool {
        !matches!(self, SyncOutcome::Loaded { .. })
    }
}

/// The bucket's index, at most `max_age` old: the stored one if fresh enough, else
/// brought up to date by listing (and written back for the next reader). A failed
/// write-back is logged, not an error.
pub async fn sync(
    store: &Arc<dyn ObjectStore>,
    max_age: Duration,
) -> Result<(BucketIndex, SyncOutcome)> {
    let stored = match load(&**store).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "reading the bucket index failed; listing the bucket");
            None
        }
    };
    let (prev, version, outcome) = match stored {
        Some(s) => {
            let age = s.index.age();
            if age <= max_age {
                return Ok((s.index, SyncOutcome::Loaded { age }));
            }
            tracing::info!(
                age_s = age.as_secs(),
                "bucket index is stale; listing the bucket to update it"
            );
            (
                Some(s.index),
                Some(s.version),
                SyncOutcome::ListedStale { age },
            )
        }
        None => {
            tracing::info!("no bucket index; listing the bucket to build it");
            (None, None, SyncOutcome::ListedMissing)
        }
    };
    let idx = update(&**store, prev.as_ref()).await?;
    match write(&**store, &idx, version).await {
        Ok(WriteOutcome::Written) => {}
        Ok(WriteOutcome::LostRace) => {
            tracing::debug!("another instance updated the bucket index first")
        }
        Err(e) => tracing::warn!(error = %e, "writing the bucket index failed"),
    }
    Ok((idx, outcome))
}

/// Blocks whose data another block of the same stream and resolution holds too:
/// their `compaction.sources` are a subset of the other's (a compactor's output and
/// its not-yet-deleted inputs; equal sets keep the newest ULID). Readers leave these
/// out so a compaction never shows samples twice (Thanos's deduplicate filter).
pub fn covered_blocks<'a>(
    blocks: impl IntoIterator<Item = &'a IndexedBlock>,
) -> std::collections::HashSet<Ulid> {
    use std::collections::{BTreeSet, HashMap, HashSet};
    type Stream<'b> = (&'b BTreeMap<String, String>, i64);
    let mut groups: HashMap<Stream<'a>, Vec<(Ulid, BTreeSet<Ulid>)>> = HashMap::new();
    for b in blocks {
        groups
            .entry((&b.labels, b.resolution))
            .or_default()
            .push((b.ulid, b.sources.iter().copied().collect()));
    }
    let mut out = HashSet::new();
    for sets in groups.values() {
        for (id, s) in sets {
            if s.is_empty() {
                continue;
            }
            let covered = sets.iter().any(|(other, o)| {
                other != id && s.is_subset(o) && (s.len() < o.len() || other > id)
            });
            if covered {
                out.insert(*id);
            }
        }
    }
    out
}

#[cfg(test)]
mod covered_tests {
    use super::*;

    fn b(id: Ulid, sources: &[Ulid], res: i64) -> IndexedBlock {
        let mut m = BlockMeta::new(id, 0, 1);
        m.compaction.sources = sources.to_vec();
        let mut e = IndexedBlock::from_meta(&m);
        e.resolution = res;
        e
    }

    #[test]
    fn compacted_inputs_are_covered() {
        let (a, c, d, x) = (Ulid::new(), Ulid::new(), Ulid::new(), Ulid::new());
        let blocks = vec![
            b(a, &[a], 0),
            b(c, &[c], 0),
            b(d, &[a, c], 0),
            // Another resolution of the same data is not a duplicate.
            b(x, &[a, c], 300_000),
        ];
        let cov = covered_blocks(&blocks);
        assert_eq!(cov, [a, c].into_iter().collect());
    }

    #[test]
    fn equal_sources_keep_one() {
        let (a, d1, d2) = (Ulid::new(), Ulid::new(), Ulid::new());
        let cov = covered_blocks(&[b(d1, &[a], 0), b(d2, &[a], 0)]);
        assert_eq!(cov.len(), 1);
        assert!(cov.contains(&d1.min(d2)));
    }
}
