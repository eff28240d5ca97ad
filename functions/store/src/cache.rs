//! In-memory caches: a byte-bounded LRU of ranges read from a block's index
//! (postings lists, series entries) and chunk segments, and [`CachedRange`], a
//! [`RangeRead`] that serves reads from it before going to the bucket.
//!
//! Entries are keyed by block, file and the exact byte range the TSDB readers ask
//! for; those ranges are deterministic for a given lookup (postings lists are read
//! at their table offsets, series at their refs, chunks at their refs), so repeated
//! and overlapping queries hit. Misses of one `read_many` go to the bucket
//! together, where [`bucket::ObjectRange`] coalesces neighbouring ranges into one
//! GET.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tsdb::RangeRead;
use ulid::Ulid;

/// Which file of a block a cached range belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// The index file (postings lists, series entries).
    Index,
    /// A chunk segment file (by number).
    Chunks(u32),
}

type Key = (Ulid, FileKind, u64, u64);

struct Inner {
    map: HashMap<Key, (Bytes, u64)>,
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: u64,
}

/// A byte-bounded LRU of byte ranges.
pub struct RangeCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for RangeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeCache")
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// Figures of a [`RangeCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub bytes: u64,
    pub entries: u64,
}

/// Per-entry bookkeeping charged on top of the data.
const ENTRY_OVERHEAD: u64 = 96;

impl RangeCache {
    /// A cache holding at most `max_bytes` (0 disables it).
    pub fn new(max_bytes: u64) -> Self {
        RangeCache {
            max_bytes,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
                bytes: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn bytes(&self) -> u64 {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }

    pub fn stats(&self) -> CacheStats {
        let (bytes, entries) = self
            .inner
            .lock()
            .map(|i| (i.bytes, i.map.len() as u64))
            .unwrap_or_default();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes,
            entries,
        }
    }

    fn get(&self, key: &Key) -> Option<Bytes> {
        if self.max_bytes == 0 {
            return None;
        }
        let mut g = self.inner.lock().ok()?;
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let found = match inner.map.get_mut(key) {
            Some((b, t)) => {
                inner.order.remove(t);
                *t = tick;
                inner.order.insert(tick, *key);
                Some(b.clone())
            }
            None => None,
        };
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    fn put(&self, key: Key, value: Bytes) {
        let cost = value.len() as u64 + ENTRY_OVERHEAD;
        // Entries larger than an eighth of the cache would flush it.
        if self.max_bytes == 0 || cost > self.max_bytes / 8 {
            return;
        }
        let Ok(mut g) = self.inner.lock() else { return };
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, t)) = inner.map.insert(key, (value, tick)) {
            inner.order.remove(&t);
            inner.bytes -= old.len() as u64 + ENTRY_OVERHEAD;
        }
        inner.order.insert(tick, key);
        inner.bytes += cost;
        while inner.bytes > self.max_bytes {
            let Some((_, k)) = inner.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = inner.map.remove(&k) {
                inner.bytes -= b.len() as u64 + ENTRY_OVERHEAD;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A block file read through the [`RangeCache`].
#[derive(Debug)]
pub struct CachedRange {
    inner: Arc<dyn RangeRead>,
    cache: Arc<RangeCache>,
    block: Ulid,
    kind: FileKind,
}

impl CachedRange {
    pub fn new(
        inner: Arc<dyn RangeRead>,
        cache: Arc<RangeCache>,
        block: Ulid,
        kind: FileKind,
    ) -> Self {
        CachedRange {
            inner,
            cache,
            block,
            kind,
        }
    }

    fn key(&self, r: &Range<u64>) -> Key {
        (self.block, self.kind, r.start, r.end)
    }
}

#[async_trait::async_trait]
impl RangeRead for CachedRange {
    async fn size(&self) -> tsdb::Result<u64> {
        self.inner.size().await
    }

    async fn read(&self, range: Range<u64>) -> tsdb::Result<Bytes> {
        let key = self.key(&range);
        if let Some(b) = self.cache.get(&key) {
            return Ok(b);
        }
        let b = self.inner.read(range).await?;
        self.cache.put(key, b.clone());
        Ok(b)
    }

    async fn read_many(&self, ranges: &[Range<u64>]) -> tsdb::Result<Vec<Bytes>> {
        let mut out: Vec<Option<Bytes>> = ranges
            .iter()
            .map(|r| self.cache.get(&self.key(r)))
            .collect();
        let missing: Vec<usize> = (0..ranges.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let want: Vec<Range<u64>> = missing.iter().map(|&i| ranges[i].clone()).collect();
            let got = self.inner.read_many(&want).await?;
            for (i, b) in missing.into_iter().zip(got) {
                self.cache.put(self.key(&ranges[i]), b.clone());
                out[i] = Some(b);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_oldest_and_counts() {
        let c = RangeCache::new(8 * (100 + ENTRY_OVERHEAD) * 2);
        let id = Ulid::nil();
        for i in 0..20u64 {
            c.put(
                (id, FileKind::Index, i, i + 100),
                Bytes::from(vec![0u8; 100]),
            );
            // keep entry 0 hot
            assert!(c.get(&(id, FileKind::Index, 0, 100)).is_some());
        }
        let s = c.stats();
        assert!(s.bytes <= 8 * (100 + ENTRY_OVERHEAD) * 2);
        assert!(s.evictions > 0);
        assert!(c.get(&(id, FileKind::Index, 0, 100)).is_some());
        assert!(c.get(&(id, FileKind::Index, 1, 101)).is_none());
        let off = RangeCache::new(0);
        off.put((id, FileKind::Index, 0, 1), Bytes::from_static(b"x"));
        assert!(off.get(&(id, FileKind::Index, 0, 1)).is_none());
    }
}
