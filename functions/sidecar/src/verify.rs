//! Checks a local block before it is shipped: the index must read end to end
//! (TOC, symbols, postings, every series entry), every series' chunks must be in
//! time order without overlap, and every chunk reference must point into an
//! existing segment file. Chunk data is not read, so a check costs index I/O
//! only; memory is bounded by one batch of series.

use std::path::Path;

use tsdb::block::Block;

/// Series entries read at once.
const BATCH: usize = 4096;

/// What a verified block holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyStats {
    pub series: u64,
    pub chunks: u64,
}

/// Verifies the block in `dir`; the error says what is wrong.
pub async fn verify_block(dir: &Path) -> Result<VerifyStats, String> {
    let block = Block::open_local(dir)
        .await
        .map_err(|e| format!("opening block: {e}"))?;
    let segments = block.chunks().num_segments() as u64;
    let refs = block
        .index()
        .all_postings()
        .await
        .map_err(|e| format!("reading postings: {e}"))?;
    let mut stats = VerifyStats::default();
    for batch in refs.chunks(BATCH) {
        let series = block
            .index()
            .series_many(batch)
            .await
            .map_err(|e| format!("reading series: {e}"))?;
        for (labels, chunks) in series {
            if labels.is_empty() {
                return Err("series without labels in the index".into());
            }
            let mut prev: Option<&tsdb::ChunkMeta> = None;
            for c in &chunks {
                if c.min_time > c.max_time {
                    return Err(format!(
                        "series {labels}: chunk with minTime {} after maxTime {}",
                        c.min_time, c.max_time
                    ));
                }
                if let Some(p) = prev {
                    if c.min_time <= p.max_time {
                        return Err(format!(
                            "series {labels}: out-of-order chunks (chunk [{}, {}] after [{}, {}])",
                            c.min_time, c.max_time, p.min_time, p.max_time
                        ));
                    }
                }
                if u64::from(c.segment()) >= segments {
                    return Err(format!(
                        "series {labels}: chunk reference into segment {} of {segments}",
                        c.segment() + 1
                    ));
                }
                prev = Some(c);
            }
            stats.series += 1;
            stats.chunks += chunks.len() as u64;
        }
    }
    Ok(stats)
}
