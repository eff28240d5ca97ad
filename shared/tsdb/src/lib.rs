//! The Prometheus TSDB block format, read and written byte-compatibly with Prometheus.
//!
//! A block is a directory: `meta.json`, `index`, `chunks/000001…`, optional
//! `tombstones`. This crate knows the bytes of each file and nothing of where they
//! live: readers take a [`RangeRead`] (a local file, memory, or, in the `bucket`
//! crate, an object in a bucket) and ask only for the byte ranges they need, so a
//! block in object storage is never downloaded whole. Decoders are plain functions
//! over byte slices and never panic on bad input. Writers stream to local files
//! with memory bounded by the number of series, not samples.
//!
//! Modules follow the files: [`chunkenc`] (chunk encodings: XOR floats, histograms),
//! [`chunks`] (segment files), [`index`] (index format v2 and postings lookup),
//! [`tombstones`], [`meta`] (`meta.json` with the Thanos section), and [`block`]
//! (a whole block: reader and streaming writer).

pub mod block;
pub mod chunkenc;
pub mod chunks;
pub mod encoding;
mod error;
pub mod index;
pub mod io;
pub mod meta;
pub mod tombstones;

pub use error::{Error, Result};
pub use io::{BytesRange, FileRange, RangeRead};

/// Where one chunk of a series lives and the time span it covers, as an index's
/// series entry records it. `chunk_ref` is the segment file's 0-based position in the
/// upper 32 bits (`chunks/000001` is 0) and the byte offset in that file in the lower
/// 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: u64,
}

impl ChunkMeta {
    /// 0-based segment index (`chunks/000001` is 0).
    pub fn segment(&self) -> u32 {
        (self.chunk_ref >> 32) as u32
    }
    /// Byte offset of the chunk record in its segment file.
    pub fn offset(&self) -> u32 {
        self.chunk_ref as u32
    }
}
