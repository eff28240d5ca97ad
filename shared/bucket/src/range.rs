//! [`ObjectRange`]: one object in a bucket seen as a [`tsdb::RangeRead`], so the
//! TSDB readers fetch only the byte ranges they need.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::OnceCell;

/// Ranges closer than this are fetched with one GET by [`ObjectRange::read_many`].
pub const DEFAULT_COALESCE_GAP: u64 = 512 * 1024;
/// A coalesced GET is not grown past this size (a lone larger range still is one GET).
pub const DEFAULT_MAX_COALESCED: u64 = 16 * 1024 * 1024;
/// Coalesced GETs of one `read_many` in flight at once.
pub const DEFAULT_READ_CONCURRENCY: usize = 8;

/// An object in a bucket read by byte ranges. The size comes from a HEAD on first
/// use unless given (e.g. from a listing or `thanos.files`).
#[derive(Debug, Clone)]
pub struct ObjectRange {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: Arc<OnceCell<u64>>,
    gap: u64,
    max_coalesced: u64,
    concurrency: usize,
}

impl ObjectRange {
    pub fn new(store: Arc<dyn ObjectStore>, path: impl Into<Path>) -> Self {
        ObjectRange {
            store,
            path: path.into(),
            size: Arc::new(OnceCell::new()),
            gap: DEFAULT_COALESCE_GAP,
            max_coalesced: DEFAULT_MAX_COALESCED,
            concurrency: DEFAULT_READ_CONCURRENCY,
        }
    }

    /// An object whose size is already known (no HEAD is made).
    pub fn with_size(store: Arc<dyn ObjectStore>, path: impl Into<Path>, size: u64) -> Self {
        let r = Self::new(store, path);
        // A fresh cell: setting cannot fail.
        let _ = r.size.set(size);
        r
    }

    /// Ranges closer than `gap` bytes are merged into one GET by `read_many`.
    pub fn with_coalesce_gap(mut self, gap: u64) -> Self {
        self.gap = gap;
        self
    }

    /// Merged GETs stop growing at `max` bytes.
    pub fn with_max_coalesced(mut self, max: u64) -> Self {
        self.max_coalesced = max.max(1);
        self
    }

    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn what(&self) -> String {
        format!("{}/{}", self.store, self.path)
    }

    fn io_err(&self, op: &str, e: object_store::Error) -> tsdb::Error {
        let kind = match e {
            object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
            _ => std::io::ErrorKind::Other,
        };
        tsdb::Error::io(
            format!("{op} {}", self.what()),
            std::io::Error::new(kind, e),
        )
    }

    async fn get(&self, range: Range<u64>) -> tsdb::Result<Bytes> {
        let want = range.end - range.start;
        let b = self
            .store
            .get_range(&self.path, range.clone())
            .await
            .map_err(|e| self.io_err(&format!("GET bytes {}..{} of", range.start, range.end), e))?;
        if b.len() as u64 != want {
            return Err(tsdb::Error::corrupt(
                self.what(),
                format!(
                    "GET bytes {}..{} returned {} bytes",
                    range.start,
                    range.end,
                    b.len()
                ),
            ));
        }
        Ok(b)
    }

    fn check(&self, range: &Range<u64>, size: u64) -> tsdb::Result<()> {
        if range.start > range.end || range.end > size {
            return Err(tsdb::Error::corrupt(
                self.what(),
                format!(
                    "byte range {}..{} outside object of {size} bytes",
                    range.start, range.end
                ),
            ));
        }
        Ok(())
    }
}

/// Merges sorted-by-start ranges whose gap is below `gap` into spans no larger than
/// `max` (unless one range alone is larger). Returns the spans and, for each input
/// range (in input order), the index of its span.
pub fn coalesce(ranges: &[Range<u64>], gap: u64, max: u64) -> (Vec<Range<u64>>, Vec<usize>) {
    let mut order: Vec<usize> = (0..ranges.len())
        .filter(|&i| ranges[i].end > ranges[i].start)
        .collect();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    let mut spans: Vec<Range<u64>> = Vec::new();
    let mut span_of = vec![usize::MAX; ranges.len()];
    for i in order {
        let r = &ranges[i];
        if let Some(last) = spans.last_mut() {
            let new_end = last.end.max(r.end);
            if r.start <= last.end.saturating_add(gap) && new_end - last.start <= max {
                last.end = new_end;
                span_of[i] = spans.len() - 1;
                continue;
            }
        }
        spans.push(r.clone());
        span_of[i] = spans.len() - 1;
    }
    (spans, span_of)
}

#[async_trait]
impl tsdb::RangeRead for ObjectRange {
    async fn size(&self) -> tsdb::Result<u64> {
        self.size
            .get_or_try_init(|| async {
                self.store
                    .head(&self.path)
                    .await
                    .map(|m| m.size)
                    .map_err(|e| self.io_err("HEAD", e))
            })
            .await
            .copied()
    }

    async fn read(&self, range: Range<u64>) -> tsdb::Result<Bytes> {
        if let Some(&size) = self.size.get() {
            self.check(&range, size)?;
        } else if range.start > range.end {
            self.check(&range, 0)?;
        }
        if range.start == range.end {
            return Ok(Bytes::new());
        }
        self.get(range).await
    }

    async fn read_many(&self, ranges: &[Range<u64>]) -> tsdb::Result<Vec<Bytes>> {
        if let Some(&size) = self.size.get() {
            for r in ranges {
                self.check(r, size)?;
            }
        } else {
            for r in ranges {
                if r.start > r.end {
                    self.check(r, 0)?;
                }
            }
        }
        let (spans, span_of) = coalesce(ranges, self.gap, self.max_coalesced);
        let fetched: Vec<Bytes> = stream::iter(spans.iter().cloned().map(|s| self.get(s)))
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        Ok(ranges
            .iter()
            .zip(span_of)
            .map(|(r, si)| {
                if r.start == r.end {
                    return Bytes::new();
                }
                let span = &spans[si];
                let from = (r.start - span.start) as usize;
                let to = (r.end - span.start) as usize;
                fetched[si].slice(from..to)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CountingStore;
    use object_store::memory::InMemory;
    use tsdb::RangeRead;

    #[test]
    fn coalesce_merges_close_ranges_and_keeps_order() {
        let (spans, of) = coalesce(&[100..110, 0..10, 20..30, 1000..1001, 5..6], 15, 1 << 20);
        assert_eq!(spans, vec![0..30, 100..110, 1000..1001]);
        assert_eq!(of, vec![1, 0, 0, 2, 0]);
        // max size splits
        let (spans, _) = coalesce(&[0..10, 10..20, 20..30], 100, 20);
        assert_eq!(spans, vec![0..20, 20..30]);
        // empty ranges get no span
        let empty: Vec<Range<u64>> = vec![Range { start: 5, end: 5 }];
        let (spans, of) = coalesce(&empty, 10, 100);
        assert!(spans.is_empty());
        assert_eq!(of, vec![usize::MAX]);
    }

    #[tokio::test]
    async fn reads_and_coalesces() {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
        mem.put(&Path::from("b/index"), data.clone().into())
            .await
            .unwrap();
        let (store, stats) = CountingStore::wrap(mem);
        let r = ObjectRange::new(store, "b/index");
        assert_eq!(r.size().await.unwrap(), data.len() as u64);
        assert_eq!(r.size().await.unwrap(), data.len() as u64);
        assert_eq!(stats.heads(), 1);
        assert_eq!(&r.read(10..20).await.unwrap()[..], &data[10..20]);
        assert!(r.read(0..(data.len() as u64 + 1)).await.is_err());
        stats.reset();
        let ranges = vec![0..100, 200..300, (2 << 20)..(2 << 20) + 10, 50..60, 7..7];
        let out = r.read_many(&ranges).await.unwrap();
        for (r, b) in ranges.iter().zip(&out) {
            assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
        }
        assert_eq!(stats.gets(), 2);
        // unknown size: a range past the end is an error, not a short read
        let r2 = ObjectRange::new(r.store.clone(), "b/index");
        assert!(r2.read((3 << 20) - 5..(3 << 20) + 5).await.is_err());
        let missing = ObjectRange::new(r.store.clone(), "b/nope");
        assert!(missing.size().await.is_err());
    }
}
