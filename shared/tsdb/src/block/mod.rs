//! A whole block: [`Block`] reads one (from local files or any [`RangeRead`]s), and
//! [`BlockWriter`] writes one, streaming.

mod reader;
mod writer;

pub use reader::{open_dir_blocks, Block, SeriesEntry};
pub use writer::{BlockWriter, SAMPLES_PER_CHUNK};

/// Name of the index file in a block directory.
pub const INDEX_FILENAME: &str = "index";
/// Name of the chunks directory in a block directory.
pub const CHUNKS_DIRNAME: &str = "chunks";
/// Name of the tombstones file in a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
