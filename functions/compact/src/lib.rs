//! `aether compact`: compaction, downsampling and retention of a bucket's blocks,
//! as Thanos's compactor does them, byte-compatible, stateless between passes.
//!
//! - [`plan`]: pure planning (groups, Thanos's planner, covered blocks,
//!   downsampling candidates, retention).
//! - [`merge`]: streaming merge of blocks (horizontal pass-through, vertical with
//!   deduplication).
//! - [`downsample`]: Thanos's 5m / 1h aggregate chunks.
//! - [`lease`]: one pass at a time per bucket (conditional-PUT lease).
//! - [`pass`]: the [`Compactor`] running passes against a bucket.
//! - [`clock`]: the injected clock.

pub mod clock;
pub mod downsample;
pub mod lease;
pub mod merge;
pub mod pass;
pub mod plan;

pub use clock::{Clock, ManualClock, SystemClock};
pub use pass::{CompactConfig, Compactor, Metrics, PassReport};
pub use plan::{GroupKey, Retention};
