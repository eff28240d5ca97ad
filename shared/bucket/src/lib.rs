//! Blocks in a bucket: the layer between the TSDB format crate and the roles.
//!
//! - [`config`]: Thanos objstore YAML (`type: S3` / `FILESYSTEM`) into an
//!   `Arc<dyn ObjectStore>` (object_store 0.14).
//! - [`retry`]: which errors are transient, and [`retry::with_backoff`] for
//!   retrying whole operations (object_store already retries single requests).
//! - [`counting`]: [`CountingStore`], a wrapper counting requests by kind.
//! - [`range`]: [`ObjectRange`], an object as a [`tsdb::RangeRead`] with ranged GETs
//!   and coalescing `read_many`.
//! - [`block`]: upload, download, list and delete blocks in Thanos's layout.
//! - [`markers`]: deletion, no-compact and no-downsample marks.
//! - [`bucket_index`]: the bucket index (`aether/bucket-index.json`), one object
//!   listing every block, kept current incrementally.
//! - [`header_cache`]: per-block index headers cached in the bucket
//!   (`<ULID>/aether-index-header-v1`).

pub mod block;
pub mod bucket_index;
pub mod config;
pub mod counting;
mod error;
pub mod header_cache;
pub mod markers;
pub mod range;
pub mod reader;
pub mod retry;

pub use block::{
    block_exists_complete, delete_block, download_block, fetch_meta, list_block_metas, list_blocks,
    upload_block, upload_block_with, BlockMetas, DeleteStats, UploadOptions, UploadStats,
};
pub use config::ObjstoreConfig;
pub use counting::{CountingStore, RequestKind, RequestStats, StatsSnapshot};
pub use error::{Error, Result};
pub use markers::{
    mark_for_deletion, mark_no_compact, mark_no_downsample, read_deletion_mark,
    read_no_compact_mark, read_no_downsample_mark, remove_marker, DeletionMark, MarkerKind,
    NoCompactMark, NoCompactReason, NoDownsampleMark,
};
pub use object_store;
pub use range::ObjectRange;
pub use reader::{open_block, open_block_with};
pub use retry::{is_transient, with_backoff, RetryPolicy};
