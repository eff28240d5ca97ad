//! Byte-range access: the one interface through which every reader in this crate
//! sees a file.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Error, Result};

/// Random access to the bytes of one file: a local file, a buffer, or an object in a
/// bucket. Implementations must return exactly `range.end - range.start` bytes or an
/// error (a range past the end is an error, not a short read).
#[async_trait]
pub trait RangeRead: Send + Sync + std::fmt::Debug {
    /// Size of the file in bytes.
    async fn size(&self) -> Result<u64>;
    /// The bytes in `range`.
    async fn read(&self, range: Range<u64>) -> Result<Bytes>;
    /// Several ranges at once; implementations over a network may coalesce them.
    async fn read_many(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            out.push(self.read(r.clone()).await?);
        }
        Ok(out)
    }
}

fn check_range(what: &str, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(Error::corrupt(
            what,
            format!(
                "byte range {}..{} outside file of {size} bytes",
                range.start, range.end
            ),
        ));
    }
    Ok(())
}

/// A file in memory.
#[derive(Debug, Clone)]
pub struct BytesRange {
    name: String,
    data: Bytes,
}

impl BytesRange {
    pub fn new(name: impl Into<String>, data: impl Into<Bytes>) -> Self {
        BytesRange {
            name: name.into(),
            data: data.into(),
        }
    }
}

#[async_trait]
impl RangeRead for BytesRange {
    async fn size(&self) -> Result<u64> {
        Ok(self.data.len() as u64)
    }
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        check_range(&self.name, &range, self.data.len() as u64)?;
        Ok(self.data.slice(range.start as usize..range.end as usize))
    }
}

/// A local file, read with positioned reads (no shared cursor).
#[derive(Debug, Clone)]
pub struct FileRange {
    path: PathBuf,
    file: Arc<std::fs::File>,
    size: u64,
}

impl FileRange {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        Ok(FileRange {
            path,
            file: Arc::new(file),
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl RangeRead for FileRange {
    async fn size(&self) -> Result<u64> {
        Ok(self.size)
    }
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        use std::os::unix::fs::FileExt;
        check_range(&self.path.display().to_string(), &range, self.size)?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        // Local positioned reads of block files are short; doing them inline avoids a
        // thread hop per chunk.
        self.file
            .read_exact_at(&mut buf, range.start)
            .map_err(|e| Error::io(format!("read {}", self.path.display()), e))?;
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_range_bounds() {
        let r = BytesRange::new("x", vec![1u8, 2, 3]);
        assert_eq!(&r.read(1..3).await.unwrap()[..], &[2, 3]);
        assert!(r.read(2..4).await.is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let bad = 3..2;
        assert!(r.read(bad).await.is_err());
    }

    #[tokio::test]
    async fn file_range_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello world").unwrap();
        let r = FileRange::open(&p).unwrap();
        assert_eq!(r.size().await.unwrap(), 11);
        assert_eq!(&r.read(6..11).await.unwrap()[..], b"world");
        assert!(r.read(6..12).await.is_err());
    }
}
