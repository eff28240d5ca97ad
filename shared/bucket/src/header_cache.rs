//! Per-block index headers kept in the bucket, next to the block they describe.
//!
//! `<ULID>/aether-index-header-v1` holds [`IndexHeader::encode`] of the block's
//! index: symbols, label names and values, and the postings offset table. A cold
//! reader fetches it with one GET instead of reading the index's TOC, symbol table
//! and postings offset table (several range GETs, megabytes for big blocks), then
//! reads only the postings, series and chunks a query needs.
//!
//! - Thanos lists blocks by `<ULID>/meta.json` and ignores other files in a block
//!   directory; [`crate::delete_block`] deletes everything under `<ULID>/`, so the
//!   header goes with its block.
//! - The content is a pure function of the index, so concurrent writers write
//!   identical bytes. It is written with a conditional create (`If-None-Match: *`):
//!   a 412 means another instance got there first, which is fine. A cached header
//!   that does not decode, or belongs to an index of another size, is rebuilt and
//!   overwritten (again with deterministic bytes).

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tsdb::index::IndexHeader;
use tsdb::meta::BlockMeta;
use tsdb::RangeRead;
use ulid::Ulid;

use crate::block::{block_file, index_path};
use crate::{Error, ObjectRange, Result};

/// File name of the cached index header in a block directory.
pub const INDEX_HEADER_FILENAME: &str = "aether-index-header-v1";

/// `<ULID>/aether-index-header-v1`
pub fn header_path(id: Ulid) -> Path {
    block_file(id, INDEX_HEADER_FILENAME)
}

/// Where a header came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSource {
    /// The cached object in the bucket (one GET).
    Bucket,
    /// Built from the block's index (and written back to the bucket).
    Built,
}

/// What writing a header back did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBack {
    /// We wrote it.
    Written,
    /// Another writer had already created it (412): nothing to do.
    AlreadyThere,
    /// The write failed (logged); readers build it again next time.
    Failed,
}

/// The index size recorded in the meta (`thanos.files`), if any.
pub fn index_size(meta: &BlockMeta) -> Option<u64> {
    meta.thanos
        .as_ref()?
        .files
        .iter()
        .find(|f| f.rel_path == "index")
        .map(|f| f.size_bytes)
        .filter(|s| *s > 0)
}

/// Reads the cached header of a block: `Ok(None)` when there is none, or when it
/// does not decode or does not match the index size in `meta` (then it is stale or
/// corrupt and should be rebuilt).
pub async fn read_header(store: &dyn ObjectStore, meta: &BlockMeta) -> Result<Option<IndexHeader>> {
    Ok(read_cached(store, meta).await?.0)
}

/// The valid cached header if any, and whether an object exists at all.
async fn read_cached(
    store: &dyn ObjectStore,
    meta: &BlockMeta,
) -> Result<(Option<IndexHeader>, bool)> {
    let key = header_path(meta.ulid);
    let bytes = match store.get(&key).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| Error::store("GET", store.to_string(), key.to_string(), e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok((None, false)),
        Err(e) => return Err(Error::store("GET", store.to_string(), key.to_string(), e)),
    };
    match IndexHeader::decode(&bytes) {
        Ok(h) if index_size(meta).is_none_or(|s| s == h.file_size()) => Ok((Some(h), true)),
        Ok(h) => {
            tracing::warn!(block = %meta.ulid, cached = h.file_size(), "cached index header is for another index size; rebuilding");
            Ok((None, true))
        }
        Err(e) => {
            tracing::warn!(block = %meta.ulid, error = %e, "cached index header does not decode; rebuilding");
            Ok((None, true))
        }
    }
}

/// Builds the header from the block's index with a few range GETs.
pub async fn build_header(store: Arc<dyn ObjectStore>, meta: &BlockMeta) -> Result<IndexHeader> {
    let file = match index_size(meta) {
        Some(size) => ObjectRange::with_size(store, index_path(meta.ulid), size),
        None => ObjectRange::new(store, index_path(meta.ulid)),
    };
    let _ = file.size().await?;
    Ok(IndexHeader::read(&file).await?)
}

/// Writes `header` as the block's cached header. `overwrite` replaces an existing
/// (stale or corrupt) object; otherwise the write is a conditional create.
pub async fn write_header(
    store: &dyn ObjectStore,
    id: Ulid,
    header: &IndexHeader,
    overwrite: bool,
) -> WriteBack {
    let key = header_path(id);
    let mode = if overwrite {
        PutMode::Overwrite
    } else {
        PutMode::Create
    };
    let payload = PutPayload::from(header.encode());
    match store
        .put_opts(&key, payload.clone(), PutOptions::from(mode))
        .await
    {
        Ok(_) => WriteBack::Written,
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => WriteBack::AlreadyThere,
        Err(object_store::Error::NotImplemented { .. }) => {
            // A backend without conditional writes: the bytes are deterministic, so
            // a plain overwrite is just as safe.
            match store.put(&key, payload).await {
                Ok(_) => WriteBack::Written,
                Err(e) => {
                    tracing::warn!(block = %id, error = %e, "writing the index header cache failed");
                    WriteBack::Failed
                }
            }
        }
        Err(e) => {
            tracing::warn!(block = %id, error = %e, "writing the index header cache failed");
            WriteBack::Failed
        }
    }
}

/// The block's index header: from the bucket's cache object if present and valid,
/// else built from the index and written back for the next reader.
pub async fn load_or_build_header(
    store: Arc<dyn ObjectStore>,
    meta: &BlockMeta,
) -> Result<(IndexHeader, HeaderSource)> {
    let (cached, exists) = match read_cached(&*store, meta).await {
        Ok(c) => c,
        Err(e) => {
            // A cache that cannot be read must not stop the block from being served.
            tracing::warn!(block = %meta.ulid, error = %e, "reading the index header cache failed");
            (None, false)
        }
    };
    if let Some(h) = cached {
        return Ok((h, HeaderSource::Bucket));
    }
    let h = build_header(store.clone(), meta).await?;
    // A header object that exists but did not decode is overwritten; a missing one
    // is created conditionally (412 = another instance wrote the same bytes).
    write_header(&*store, meta.ulid, &h, exists).await;
    Ok((h, HeaderSource::Built))
}
