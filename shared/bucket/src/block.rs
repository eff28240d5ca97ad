//! TSDB blocks in a bucket, in Thanos's layout:
//!
//! ```text
//! <ULID>/meta.json            written last on upload, deleted first
//! <ULID>/index
//! <ULID>/chunks/000001 ...
//! <ULID>/tombstones           optional
//! <ULID>/deletion-mark.json   optional markers (see `markers`)
//! debug/metas/<ULID>.json     copy of meta.json written on upload
//! ```
//!
//! A block directory without `meta.json` is a partial upload (or a deletion in
//! progress) and is reported as such, never read as a block.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};

use bytes::BytesMut;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tsdb::meta::{BlockMeta, FileEntry, ThanosMeta, META_FILENAME};
use ulid::Ulid;

use crate::markers::MarkerKind;
use crate::{Error, Result};

pub const INDEX_FILENAME: &str = "index";
pub const CHUNKS_DIRNAME: &str = "chunks";
pub const TOMBSTONES_FILENAME: &str = "tombstones";
/// Where upload keeps a copy of each block's meta, as Thanos does.
pub const DEBUG_METAS_DIR: &str = "debug/metas";

/// `<ULID>/<rel>` (rel may contain `/`).
pub fn block_file(id: Ulid, rel: &str) -> Path {
    Path::from_iter(std::iter::once(id.to_string()).chain(rel.split('/').map(str::to_string)))
}

/// `<ULID>/meta.json`
pub fn meta_path(id: Ulid) -> Path {
    block_file(id, META_FILENAME)
}

/// `<ULID>/index`
pub fn index_path(id: Ulid) -> Path {
    block_file(id, INDEX_FILENAME)
}

/// `<ULID>/chunks/NNNNNN` for a 1-based segment number.
pub fn chunk_path(id: Ulid, segment: u32) -> Path {
    block_file(id, &format!("{CHUNKS_DIRNAME}/{segment:06}"))
}

/// `debug/metas/<ULID>.json`
pub fn debug_meta_path(id: Ulid) -> Path {
    Path::from_iter([
        "debug".to_string(),
        "metas".to_string(),
        format!("{id}.json"),
    ])
}

/// How files are uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    /// Files of at least this many bytes are multipart-uploaded in parts of this
    /// size (raised for huge files so no upload needs more than 10,000 parts);
    /// smaller files are one PUT. S3 requires at least 5 MiB for all parts but the
    /// last.
    pub part_size: u64,
    /// Use multipart uploads at all (off: every file is one PUT, read into memory).
    pub multipart: bool,
    /// Parts of one file in flight at once; memory use is about
    /// `part_size * (part_concurrency + 1)`.
    pub part_concurrency: usize,
    /// Also write `debug/metas/<ULID>.json` (a failure there is only logged).
    pub debug_meta: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_size: crate::config::DEFAULT_PART_SIZE,
            multipart: true,
            part_concurrency: 4,
            debug_meta: true,
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadStats {
    pub ulid: Ulid,
    /// Objects written for the block, meta.json included (not the debug meta).
    pub files: usize,
    /// Bytes of the block's data files (chunks, index, tombstones).
    pub bytes: u64,
    /// Files that went up as multipart uploads.
    pub multipart_files: usize,
    /// The meta.json as uploaded (with `thanos.files`).
    pub meta: BlockMeta,
}

struct LocalFile {
    rel: String,
    path: PathBuf,
    size: u64,
}

fn bucket_name(store: &dyn ObjectStore) -> String {
    store.to_string()
}

/// Lists a local block's data files: `chunks/*` (sorted), `index`, and `tombstones`
/// if present.
fn gather_local_files(dir: &FsPath) -> Result<Vec<LocalFile>> {
    let invalid = |reason: String| Error::InvalidBlockDir {
        path: dir.to_path_buf(),
        reason,
    };
    let chunks_dir = dir.join(CHUNKS_DIRNAME);
    let rd = std::fs::read_dir(&chunks_dir)
        .map_err(|e| invalid(format!("reading {CHUNKS_DIRNAME}/: {e}")))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::local("reading directory", &chunks_dir, e))?;
        let path = entry.path();
        let md = entry
            .metadata()
            .map_err(|e| Error::local("stat", &path, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(invalid(format!("non-UTF-8 file name in {CHUNKS_DIRNAME}/")));
        };
        if !md.is_file() {
            tracing::warn!(path = %path.display(), "skipping non-file in chunks directory");
            continue;
        }
        files.push(LocalFile {
            rel: format!("{CHUNKS_DIRNAME}/{name}"),
            path,
            size: md.len(),
        });
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    let index = dir.join(INDEX_FILENAME);
    let md =
        std::fs::metadata(&index).map_err(|e| invalid(format!("stat {INDEX_FILENAME}: {e}")))?;
    files.push(LocalFile {
        rel: INDEX_FILENAME.into(),
        path: index,
        size: md.len(),
    });
    let tomb = dir.join(TOMBSTONES_FILENAME);
    if let Ok(md) = std::fs::metadata(&tomb) {
        if md.is_file() {
            files.push(LocalFile {
                rel: TOMBSTONES_FILENAME.into(),
                path: tomb,
                size: md.len(),
            });
        }
    }
    Ok(files)
}

/// Uploads one local file to `key`: one PUT when small (or multipart is off),
/// otherwise a multipart upload read part by part. Returns whether it was multipart.
async fn upload_file(
    store: &dyn ObjectStore,
    file: &LocalFile,
    key: &Path,
    opts: &UploadOptions,
) -> Result<bool> {
    let bucket = bucket_name(store);
    let put_err = |op, e| Error::store(op, bucket.clone(), key.to_string(), e);
    let part_size = opts
        .part_size
        .max(1)
        .max(file.size.div_ceil(10_000))
        .min(usize::MAX as u64);
    if !opts.multipart || file.size < part_size {
        let data = tokio::fs::read(&file.path)
            .await
            .map_err(|e| Error::local("reading", &file.path, e))?;
        if data.len() as u64 != file.size {
            return Err(Error::LocalFileChanged {
                path: file.path.clone(),
                expected: file.size,
                actual: data.len() as u64,
            });
        }
        store
            .put(key, PutPayload::from(data))
            .await
            .map_err(|e| put_err("PUT", e))?;
        return Ok(false);
    }
    let part_size = part_size as usize;
    let mut f = tokio::fs::File::open(&file.path)
        .await
        .map_err(|e| Error::local("opening", &file.path, e))?;
    let upload = store
        .put_multipart(key)
        .await
        .map_err(|e| put_err("start multipart upload", e))?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, part_size);
    let mut total = 0u64;
    loop {
        if let Err(e) = w.wait_for_capacity(opts.part_concurrency.max(1)).await {
            let _ = w.abort().await;
            return Err(put_err("upload part", e));
        }
        let mut buf = BytesMut::with_capacity(part_size);
        let mut eof = false;
        while buf.len() < part_size {
            match f.read_buf(&mut buf).await {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(Error::local("reading", &file.path, e));
                }
            }
        }
        total += buf.len() as u64;
        if !buf.is_empty() {
            w.put(buf.freeze());
        }
        if eof {
            break;
        }
    }
    if total != file.size {
        let _ = w.abort().await;
        return Err(Error::LocalFileChanged {
            path: file.path.clone(),
            expected: file.size,
            actual: total,
        });
    }
    w.finish()
        .await
        .map_err(|e| put_err("complete multipart upload", e))?;
    Ok(true)
}

/// Uploads the block in `dir` with default [`UploadOptions`].
pub async fn upload_block(
    store: &dyn ObjectStore,
    dir: &FsPath,
    meta_override: Option<&BlockMeta>,
) -> Result<UploadStats> {
    upload_block_with(store, dir, meta_override, &UploadOptions::default()).await
}

/// Uploads the block in `dir`: chunk files, then `index` (and `tombstones`), checks
/// each object's size with a HEAD, then writes `debug/metas/<ULID>.json` and
/// finally `<ULID>/meta.json`, with `thanos.files` listing every file and its size
/// (meta.json without one), as Thanos does. The meta is `meta_override` if given,
/// else the directory's `meta.json`; the local `meta.json` is not changed.
///
/// A failed upload leaves a partial block (no meta.json) that a retry overwrites.
pub async fn upload_block_with(
    store: &dyn ObjectStore,
    dir: &FsPath,
    meta_override: Option<&BlockMeta>,
    opts: &UploadOptions,
) -> Result<UploadStats> {
    let invalid = |reason: String| Error::InvalidBlockDir {
        path: dir.to_path_buf(),
        reason,
    };
    match std::fs::metadata(dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(invalid("not a directory".into())),
        Err(e) => return Err(invalid(e.to_string())),
    }
    let mut meta = match meta_override {
        Some(m) => m.clone(),
        None => BlockMeta::read_dir(dir).map_err(|e| invalid(format!("reading meta.json: {e}")))?,
    };
    let id = meta.ulid;
    if let Some(dir_id) = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| Ulid::from_string(n).ok())
    {
        if dir_id != id {
            return Err(invalid(format!(
                "directory is named {dir_id} but meta.json says {id}"
            )));
        }
    }
    let files = gather_local_files(dir)?;
    let bucket = bucket_name(store);

    let mut entries: Vec<FileEntry> = files
        .iter()
        .map(|f| FileEntry {
            rel_path: f.rel.clone(),
            size_bytes: f.size,
            hash: None,
        })
        .collect();
    entries.push(FileEntry {
        rel_path: META_FILENAME.into(),
        size_bytes: 0,
        hash: None,
    });
    entries.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    meta.thanos
        .get_or_insert_with(|| ThanosMeta::new("", BTreeMap::new()))
        .files = entries;

    let mut multipart_files = 0;
    let mut bytes = 0;
    // Chunks first, then index, then tombstones: the order gather_local_files keeps.
    for f in &files {
        let key = block_file(id, &f.rel);
        if upload_file(store, f, &key, opts).await? {
            multipart_files += 1;
        }
        bytes += f.size;
    }
    for f in &files {
        let key = block_file(id, &f.rel);
        let head = store
            .head(&key)
            .await
            .map_err(|e| Error::store("HEAD", bucket.clone(), key.to_string(), e))?;
        if head.size != f.size {
            return Err(Error::SizeMismatch {
                bucket: bucket.clone(),
                key: key.to_string(),
                expected: f.size,
                actual: head.size,
            });
        }
    }

    let meta_json = meta.to_json();
    if opts.debug_meta {
        let key = debug_meta_path(id);
        if let Err(e) = store.put(&key, PutPayload::from(meta_json.clone())).await {
            tracing::warn!(block = %id, error = %e, "writing {key} failed; continuing");
        }
    }
    let key = meta_path(id);
    store
        .put(&key, PutPayload::from(meta_json))
        .await
        .map_err(|e| Error::store("PUT", bucket.clone(), key.to_string(), e))?;
    tracing::info!(block = %id, bucket = %bucket, files = files.len() + 1, bytes, "uploaded block");
    Ok(UploadStats {
        ulid: id,
        files: files.len() + 1,
        bytes,
        multipart_files,
        meta,
    })
}

/// Parses `<ULID>/meta.json` bytes.
fn parse_meta(store: &dyn ObjectStore, id: Ulid, bytes: &[u8]) -> Result<BlockMeta> {
    let key = meta_path(id);
    let m = BlockMeta::from_json(bytes)
        .map_err(|e| Error::invalid_object(bucket_name(store), key.to_string(), e.to_string()))?;
    if m.ulid != id {
        return Err(Error::invalid_object(
            bucket_name(store),
            key.to_string(),
            format!("meta.json is for block {}", m.ulid),
        ));
    }
    Ok(m)
}

async fn get_bytes(store: &dyn ObjectStore, key: &Path) -> Result<bytes::Bytes> {
    let r = match store.get(key).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    r.map_err(|e| Error::store("GET", bucket_name(store), key.to_string(), e))
}

/// The block's meta, or None when `meta.json` is missing (a partial upload or a
/// block being deleted). A meta.json that does not parse is an error.
pub async fn fetch_meta(store: &dyn ObjectStore, id: Ulid) -> Result<Option<BlockMeta>> {
    match get_bytes(store, &meta_path(id)).await {
        Ok(b) => parse_meta(store, id, &b).map(Some),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the block is complete (its `meta.json` exists): one HEAD.
pub async fn block_exists_complete(store: &dyn ObjectStore, id: Ulid) -> Result<bool> {
    let key = meta_path(id);
    match store.head(&key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::store("HEAD", bucket_name(store), key.to_string(), e)),
    }
}

/// The ULIDs of all block directories at the bucket's root (complete or not),
/// sorted. Other entries (`debug/`, stray files) are skipped.
pub async fn list_blocks(store: &dyn ObjectStore) -> Result<Vec<Ulid>> {
    let listing = store
        .list_with_delimiter(None)
        .await
        .map_err(|e| Error::store("LIST", bucket_name(store), "", e))?;
    let mut ids: Vec<Ulid> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename())
        .filter_map(|name| {
            Ulid::from_string(name)
                .ok()
                .filter(|u| u.to_string() == name)
        })
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Every object of a block (`<ULID>/...`), markers included.
pub async fn list_block_files(store: &dyn ObjectStore, id: Ulid) -> Result<Vec<ObjectMeta>> {
    let prefix = Path::from(id.to_string());
    let mut v: Vec<ObjectMeta> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::store("LIST", bucket_name(store), format!("{prefix}/"), e))?;
    v.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(v)
}

/// The blocks of a bucket by state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockMetas {
    /// Complete blocks, sorted by ULID.
    pub metas: Vec<BlockMeta>,
    /// Block directories without `meta.json` (partial uploads, deletions in progress).
    pub partial: Vec<Ulid>,
    /// Blocks whose `meta.json` does not parse, with the reason.
    pub corrupted: Vec<(Ulid, String)>,
}

/// Meta fetches in flight in [`list_block_metas`].
pub const META_FETCH_CONCURRENCY: usize = 16;

/// Lists the bucket's blocks and fetches every meta.json ([`META_FETCH_CONCURRENCY`]
/// at a time). Any request failure fails the call (callers retry it); bad metas
/// are reported in `corrupted`, not as an error.
pub async fn list_block_metas(store: &dyn ObjectStore) -> Result<BlockMetas> {
    let ids = list_blocks(store).await?;
    let fetched: Vec<(Ulid, Result<Option<BlockMeta>>)> = stream::iter(ids)
        .map(|id| async move { (id, fetch_meta(store, id).await) })
        .buffer_unordered(META_FETCH_CONCURRENCY)
        .collect()
        .await;
    let mut out = BlockMetas::default();
    for (id, r) in fetched {
        match r {
            Ok(Some(m)) => out.metas.push(m),
            Ok(None) => out.partial.push(id),
            Err(Error::InvalidObject { reason, .. }) => out.corrupted.push((id, reason)),
            Err(e) => return Err(e),
        }
    }
    out.metas.sort_by_key(|m| m.ulid);
    out.partial.sort();
    out.corrupted.sort_by_key(|c| c.0);
    Ok(out)
}

/// Downloads a block into `dest` (the block directory itself, e.g. `.../<ULID>`):
/// meta.json is fetched first (a missing one is [`Error::NotFound`]), then every
/// other object of the block except markers is streamed to disk in a temporary
/// sibling directory, sizes are checked against the listing and `thanos.files`,
/// meta.json is written last, and the directory is renamed to `dest` (replacing
/// an existing one). Returns the block's meta.
pub async fn download_block(store: &dyn ObjectStore, id: Ulid, dest: &FsPath) -> Result<BlockMeta> {
    let bucket = bucket_name(store);
    let meta_key = meta_path(id);
    let meta_bytes = get_bytes(store, &meta_key).await?;
    let meta = parse_meta(store, id, &meta_bytes)?;

    let objects = list_block_files(store, id).await?;
    let mut wanted: Vec<(Vec<String>, ObjectMeta)> = Vec::new();
    let block_prefix = Path::from(id.to_string());
    for o in objects {
        let Some(rel) = o.location.prefix_match(&block_prefix) else {
            continue;
        };
        let parts: Vec<String> = rel.map(|p| p.as_ref().to_string()).collect();
        if parts.is_empty() || parts.iter().any(|p| p == ".." || p == "." || p.is_empty()) {
            continue;
        }
        if parts.len() == 1
            && (parts[0] == META_FILENAME || MarkerKind::from_filename(&parts[0]).is_some())
        {
            continue;
        }
        wanted.push((parts, o));
    }
    // Everything thanos.files promises must be there, at the promised size.
    let listed: HashMap<String, u64> = wanted
        .iter()
        .map(|(parts, o)| (parts.join("/"), o.size))
        .collect();
    if let Some(t) = &meta.thanos {
        for f in &t.files {
            if f.rel_path == META_FILENAME {
                continue;
            }
            match listed.get(&f.rel_path) {
                None => {
                    return Err(Error::NotFound {
                        bucket: bucket.clone(),
                        key: block_file(id, &f.rel_path).to_string(),
                    })
                }
                Some(&size) if f.size_bytes != 0 && size != f.size_bytes => {
                    return Err(Error::SizeMismatch {
                        bucket: bucket.clone(),
                        key: block_file(id, &f.rel_path).to_string(),
                        expected: f.size_bytes,
                        actual: size,
                    })
                }
                Some(_) => {}
            }
        }
    }
    if !listed.contains_key(INDEX_FILENAME) {
        return Err(Error::NotFound {
            bucket,
            key: index_path(id).to_string(),
        });
    }

    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| Error::local("creating directory", &parent, e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| id.to_string());
    let tmp = parent.join(format!(".{name}.download-{}", Ulid::new()));
    let result = download_into(store, &tmp, &wanted, &meta_bytes).await;
    let result = match result {
        Ok(()) => replace_dir(&tmp, dest).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        return Err(e);
    }
    tracing::info!(block = %id, bucket = %bucket, dest = %dest.display(), "downloaded block");
    Ok(meta)
}

/// Files downloaded at once by [`download_block`].
pub const DOWNLOAD_CONCURRENCY: usize = 4;

async fn download_into(
    store: &dyn ObjectStore,
    tmp: &FsPath,
    wanted: &[(Vec<String>, ObjectMeta)],
    meta_bytes: &[u8],
) -> Result<()> {
    tokio::fs::create_dir_all(tmp.join(CHUNKS_DIRNAME))
        .await
        .map_err(|e| Error::local("creating directory", tmp, e))?;
    stream::iter(wanted)
        .map(|(parts, o)| {
            let mut local = tmp.to_path_buf();
            local.extend(parts);
            async move { download_object(store, o, &local).await }
        })
        .buffer_unordered(DOWNLOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    write_synced(&tmp.join(META_FILENAME), meta_bytes).await?;
    Ok(())
}

async fn download_object(store: &dyn ObjectStore, o: &ObjectMeta, local: &FsPath) -> Result<()> {
    let bucket = bucket_name(store);
    let key = o.location.to_string();
    if let Some(p) = local.parent() {
        tokio::fs::create_dir_all(p)
            .await
            .map_err(|e| Error::local("creating directory", p, e))?;
    }
    let mut f = tokio::fs::File::create(local)
        .await
        .map_err(|e| Error::local("creating", local, e))?;
    let r = store
        .get(&o.location)
        .await
        .map_err(|e| Error::store("GET", bucket.clone(), key.clone(), e))?;
    let mut s = r.into_stream();
    let mut n = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Error::store("GET", bucket.clone(), key.clone(), e))?;
        n += chunk.len() as u64;
        f.write_all(&chunk)
            .await
            .map_err(|e| Error::local("writing", local, e))?;
    }
    f.sync_all()
        .await
        .map_err(|e| Error::local("fsync", local, e))?;
    if n != o.size {
        return Err(Error::SizeMismatch {
            bucket,
            key,
            expected: o.size,
            actual: n,
        });
    }
    Ok(())
}

async fn write_synced(path: &FsPath, data: &[u8]) -> Result<()> {
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::local("creating", path, e))?;
    f.write_all(data)
        .await
        .map_err(|e| Error::local("writing", path, e))?;
    f.sync_all()
        .await
        .map_err(|e| Error::local("fsync", path, e))
}

async fn replace_dir(tmp: &FsPath, dest: &FsPath) -> Result<()> {
    if tokio::fs::symlink_metadata(dest).await.is_ok() {
        tokio::fs::remove_dir_all(dest)
            .await
            .map_err(|e| Error::local("removing old directory", dest, e))?;
    }
    tokio::fs::rename(tmp, dest)
        .await
        .map_err(|e| Error::local("renaming download into place at", dest, e))?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = tokio::fs::File::open(parent).await {
            let _ = d.sync_all().await;
        }
    }
    Ok(())
}

/// Object deletions in flight in [`delete_block`].
pub const DELETE_CONCURRENCY: usize = 8;

/// What [`delete_block`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteStats {
    /// Objects deleted (meta.json and the deletion mark included when present).
    pub deleted: usize,
}

async fn delete_if_exists(store: &dyn ObjectStore, key: &Path) -> Result<bool> {
    match store.head(key).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(Error::store("HEAD", bucket_name(store), key.to_string(), e)),
    }
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
        Err(e) => Err(Error::store(
            "DELETE",
            bucket_name(store),
            key.to_string(),
            e,
        )),
    }
}

/// Deletes a block in Thanos's order: `meta.json` first (so the block turns partial
/// at once), then every other object, and `deletion-mark.json` last. Safe to rerun
/// after a failure. `debug/metas/<ULID>.json` is kept, as Thanos keeps it. Finally
/// the emptied directory keys (`<ULID>/chunks`, `<ULID>`) are deleted too, so
/// SeaweedFS stops listing the block.
pub async fn delete_block(store: &dyn ObjectStore, id: Ulid) -> Result<DeleteStats> {
    let bucket = bucket_name(store);
    let meta_key = meta_path(id);
    let mark_key = MarkerKind::Deletion.path(id);
    let mut deleted = 0;
    if delete_if_exists(store, &meta_key).await? {
        deleted += 1;
    }
    let rest: Vec<Path> = list_block_files(store, id)
        .await?
        .into_iter()
        .map(|o| o.location)
        .filter(|p| *p != meta_key && *p != mark_key)
        .collect();
    // One DELETE per object, as Thanos does (not S3's bulk DeleteObjects): SeaweedFS
    // only cleans up emptied "directories" after single-object deletes.
    let n = rest.len();
    let mut dirs: Vec<Path> = vec![Path::from(id.to_string())];
    for key in &rest {
        let parts: Vec<_> = key.parts().collect();
        for depth in 2..parts.len() {
            let dir = Path::from_iter(parts[..depth].iter().cloned());
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    stream::iter(rest)
        .map(|key| async move {
            match store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(Error::store(
                    "DELETE",
                    bucket_name(store),
                    key.to_string(),
                    e,
                )),
            }
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    deleted += n;
    if delete_if_exists(store, &mark_key).await? {
        deleted += 1;
    }
    // Stores with real directories (SeaweedFS's filer) keep emptied ones and list
    // them as prefixes; deleting the directory's key removes an empty one there. On
    // S3 such keys do not exist (a no-op); errors are ignored.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.parts().count()));
    for d in dirs {
        if let Err(e) = store.delete(&d).await {
            tracing::debug!(key = %d, error = %e, "removing directory key failed; ignored");
        }
    }
    tracing::info!(block = %id, bucket = %bucket, deleted, "deleted block");
    Ok(DeleteStats { deleted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let id = Ulid::from_string("01GZ6X0Q3N0000000000000000").unwrap();
        assert_eq!(
            meta_path(id).as_ref(),
            "01GZ6X0Q3N0000000000000000/meta.json"
        );
        assert_eq!(index_path(id).as_ref(), "01GZ6X0Q3N0000000000000000/index");
        assert_eq!(
            chunk_path(id, 1).as_ref(),
            "01GZ6X0Q3N0000000000000000/chunks/000001"
        );
        assert_eq!(
            debug_meta_path(id).as_ref(),
            "debug/metas/01GZ6X0Q3N0000000000000000.json"
        );
        assert_eq!(
            MarkerKind::NoCompact.path(id).as_ref(),
            "01GZ6X0Q3N0000000000000000/no-compact-mark.json"
        );
    }
}
