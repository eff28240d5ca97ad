//! Reading a block where it lies: [`open_block`] gives a [`tsdb::block::Block`] whose
//! index and chunk readers fetch byte ranges of the bucket's objects, so serving a
//! query never downloads a block whole.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tsdb::block::Block;
use tsdb::chunks::ChunkReader;
use tsdb::index::{IndexHeader, IndexReader};
use tsdb::meta::BlockMeta;
use tsdb::tombstones::{self, Tombstones};
use tsdb::RangeRead;

use crate::block::{block_file, index_path};
use crate::{Error, ObjectRange, Result};

/// The chunk segment files of a block with their sizes: from `thanos.files` when the
/// meta lists them (no request), else from one LIST of `<ULID>/chunks/`.
async fn chunk_segments(store: &Arc<dyn ObjectStore>, meta: &BlockMeta) -> Result<Vec<(u32, u64)>> {
    let from_meta: Vec<(u32, u64)> = meta
        .thanos
        .iter()
        .flat_map(|t| t.files.iter())
        .filter_map(|f| {
            let n = f.rel_path.strip_prefix("chunks/")?.parse::<u32>().ok()?;
            Some((n, f.size_bytes))
        })
        .filter(|(_, size)| *size > 0)
        .collect();
    if !from_meta.is_empty() {
        return Ok(from_meta);
    }
    let prefix = Path::from(format!("{}/chunks", meta.ulid));
    let listed: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::store("LIST", store.to_string(), format!("{prefix}/"), e))?;
    Ok(listed
        .into_iter()
        .filter_map(|o| Some((o.location.filename()?.parse::<u32>().ok()?, o.size)))
        .collect())
}

fn index_size(meta: &BlockMeta) -> Option<u64> {
    meta.thanos
        .as_ref()?
        .files
        .iter()
        .find(|f| f.rel_path == "index")
        .map(|f| f.size_bytes)
        .filter(|s| *s > 0)
}

/// Opens block `meta.ulid` in the bucket for reading. With `header` (e.g. from a
/// cache) the index is not touched until a lookup needs postings or series;
/// without it the header is read from the index with a few range GETs.
pub async fn open_block(
    store: Arc<dyn ObjectStore>,
    meta: BlockMeta,
    header: Option<Arc<IndexHeader>>,
) -> Result<Block> {
    open_block_with(store, meta, header, None).await
}

/// [`open_block`], told whether the block has a `tombstones` file (e.g. from a
/// listing or the bucket index): `Some(false)` saves the GET that looks for one.
pub async fn open_block_with(
    store: Arc<dyn ObjectStore>,
    meta: BlockMeta,
    header: Option<Arc<IndexHeader>>,
    has_tombstones: Option<bool>,
) -> Result<Block> {
    let id = meta.ulid;
    let index_file: Arc<dyn RangeRead> = Arc::new(match index_size(&meta) {
        Some(size) => ObjectRange::with_size(store.clone(), index_path(id), size),
        None => ObjectRange::new(store.clone(), index_path(id)),
    });
    let index = match header {
        Some(h) => IndexReader::new(h, index_file),
        None => IndexReader::open(index_file).await?,
    };
    let segments = chunk_segments(&store, &meta).await?;
    let files = segments
        .into_iter()
        .map(|(n, size)| {
            let path = block_file(
                id,
                &format!("chunks/{}", tsdb::chunks::segment_file_name(n)),
            );
            let f: Arc<dyn RangeRead> = Arc::new(ObjectRange::with_size(store.clone(), path, size));
            (n, f)
        })
        .collect();
    // The segment header check would cost a GET per segment; record CRCs still
    // catch a wrong or corrupt file.
    let chunks = ChunkReader::new(files)?.without_header_checks();
    // Thanos doesn't upload tombstones; a block deleted-from with Prometheus's admin
    // API before upload carries them.
    let ts_path = block_file(id, "tombstones");
    if has_tombstones == Some(false) {
        return Ok(Block::new(meta, index, chunks, Tombstones::default()));
    }
    let tombstones = match store.get(&ts_path).await {
        Ok(r) => {
            let b = r
                .bytes()
                .await
                .map_err(|e| Error::store("GET", store.to_string(), ts_path.to_string(), e))?;
            tombstones::read(&b)?
        }
        Err(object_store::Error::NotFound { .. }) => Tombstones::default(),
        Err(e) => {
            return Err(Error::store(
                "GET",
                store.to_string(),
                ts_path.to_string(),
                e,
            ))
        }
    };
    Ok(Block::new(meta, index, chunks, tombstones))
}
