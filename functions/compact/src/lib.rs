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
//! - [`hooks`]: phase hooks (crash tests) and progress reporting.
//! - [`progress`]: progress bars on a terminal.

pub mod clock;
pub mod downsample;
pub mod hooks;
pub mod lease;
pub mod merge;
pub mod pass;
pub mod plan;
pub mod progress;

pub use clock::{Clock, ManualClock, SystemClock};
pub use hooks::{Phase, PhaseHook, Progress};
pub use merge::DedupFunc;
pub use pass::{CompactConfig, Compactor, Metrics, PassError, PassReport, PassSummary};
pub use plan::{GroupKey, Retention};
