//! Block marker files, byte-compatible with Thanos (`pkg/block/metadata/markers.go`):
//! `deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json` in the
//! block's directory.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

use crate::block::block_file;
use crate::{Error, Result};

pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";
pub const NO_COMPACT_MARK_FILENAME: &str = "no-compact-mark.json";
pub const NO_DOWNSAMPLE_MARK_FILENAME: &str = "no-downsample-mark.json";
/// The only marker version Thanos writes and accepts.
pub const MARKER_VERSION_1: u32 = 1;

/// Which marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkerKind {
    Deletion,
    NoCompact,
    NoDownsample,
}

impl MarkerKind {
    pub const ALL: [MarkerKind; 3] = [
        MarkerKind::Deletion,
        MarkerKind::NoCompact,
        MarkerKind::NoDownsample,
    ];

    pub fn filename(self) -> &'static str {
        match self {
            MarkerKind::Deletion => DELETION_MARK_FILENAME,
            MarkerKind::NoCompact => NO_COMPACT_MARK_FILENAME,
            MarkerKind::NoDownsample => NO_DOWNSAMPLE_MARK_FILENAME,
        }
    }

    /// `<ULID>/<filename>`.
    pub fn path(self, id: Ulid) -> Path {
        block_file(id, self.filename())
    }

    /// The marker a file name denotes, if any.
    pub fn from_filename(name: &str) -> Option<MarkerKind> {
        MarkerKind::ALL.into_iter().find(|k| k.filename() == name)
    }
}

/// `deletion-mark.json`: the block is to be deleted after a delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds when the block was marked.
    pub deletion_time: i64,
}

/// Why a block is excluded from compaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NoCompactReason {
    /// `manual`
    Manual,
    /// `index-size-exceeding`
    IndexSizeExceeding,
    /// `block-index-out-of-order-chunk`
    OutOfOrderChunks,
    /// `downsample-vertical-compaction`
    DownsampleVerticalCompaction,
    /// Any other reason string another tool wrote.
    Other(String),
}

impl NoCompactReason {
    pub fn as_str(&self) -> &str {
        match self {
            NoCompactReason::Manual => "manual",
            NoCompactReason::IndexSizeExceeding => "index-size-exceeding",
            NoCompactReason::OutOfOrderChunks => "block-index-out-of-order-chunk",
            NoCompactReason::DownsampleVerticalCompaction => "downsample-vertical-compaction",
            NoCompactReason::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "manual" => NoCompactReason::Manual,
            "index-size-exceeding" => NoCompactReason::IndexSizeExceeding,
            "block-index-out-of-order-chunk" => NoCompactReason::OutOfOrderChunks,
            "downsample-vertical-compaction" => NoCompactReason::DownsampleVerticalCompaction,
            other => NoCompactReason::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for NoCompactReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NoCompactReason {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NoCompactReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(NoCompactReason::parse(&String::deserialize(d)?))
    }
}

/// `no-compact-mark.json`: the block must not be compacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds when the block was marked.
    pub no_compact_time: i64,
    pub reason: NoCompactReason,
}

/// `no-downsample-mark.json`: the block must not be downsampled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// Unix seconds when the block was marked.
    pub no_downsample_time: i64,
    /// Thanos writes `manual`.
    pub reason: String,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn exists(store: &dyn ObjectStore, path: &Path) -> Result<bool> {
    match store.head(path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::store("HEAD", store.to_string(), path.to_string(), e)),
    }
}

/// Writes a marker unless one exists (as Thanos: an existing marker is kept and
/// `false` returned).
async fn write_marker<T: Serialize>(
    store: &dyn ObjectStore,
    kind: MarkerKind,
    id: Ulid,
    marker: &T,
) -> Result<bool> {
    let path = kind.path(id);
    if exists(store, &path).await? {
        tracing::warn!(block = %id, marker = kind.filename(), "marker already exists; not rewriting it");
        return Ok(false);
    }
    let body = serde_json::to_vec(marker).map_err(|e| {
        Error::invalid_object(
            store.to_string(),
            path.to_string(),
            format!("encoding: {e}"),
        )
    })?;
    store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| Error::store("PUT", store.to_string(), path.to_string(), e))?;
    tracing::info!(block = %id, marker = kind.filename(), "block marked");
    Ok(true)
}

/// Marks a block for deletion (`deletion-mark.json`, deletion_time = now). Returns
/// false when it was already marked.
pub async fn mark_for_deletion(store: &dyn ObjectStore, id: Ulid, details: &str) -> Result<bool> {
    let m = DeletionMark {
        id,
        version: MARKER_VERSION_1,
        details: details.to_string(),
        deletion_time: now_unix(),
    };
    write_marker(store, MarkerKind::Deletion, id, &m).await
}

/// Marks a block to be excluded from compaction. Returns false when already marked.
pub async fn mark_no_compact(
    store: &dyn ObjectStore,
    id: Ulid,
    reason: NoCompactReason,
    details: &str,
) -> Result<bool> {
    let m = NoCompactMark {
        id,
        version: MARKER_VERSION_1,
        details: details.to_string(),
        no_compact_time: now_unix(),
        reason,
    };
    write_marker(store, MarkerKind::NoCompact, id, &m).await
}

/// Marks a block to be excluded from downsampling. Returns false when already marked.
pub async fn mark_no_downsample(
    store: &dyn ObjectStore,
    id: Ulid,
    reason: &str,
    details: &str,
) -> Result<bool> {
    let m = NoDownsampleMark {
        id,
        version: MARKER_VERSION_1,
        details: details.to_string(),
        no_downsample_time: now_unix(),
        reason: reason.to_string(),
    };
    write_marker(store, MarkerKind::NoDownsample, id, &m).await
}

/// Removes a marker; a missing marker is not an error.
pub async fn remove_marker(store: &dyn ObjectStore, id: Ulid, kind: MarkerKind) -> Result<()> {
    let path = kind.path(id);
    match store.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(
            "DELETE",
            store.to_string(),
            path.to_string(),
            e,
        )),
    }
}

async fn read_marker<T: for<'de> Deserialize<'de>>(
    store: &dyn ObjectStore,
    id: Ulid,
    kind: MarkerKind,
    version: impl Fn(&T) -> u32,
) -> Result<Option<T>> {
    let path = kind.path(id);
    let bytes = match store.get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store("GET", store.to_string(), path.to_string(), e)),
    };
    let m: T = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid_object(
            store.to_string(),
            path.to_string(),
            format!("unmarshal marker JSON: {e}"),
        )
    })?;
    let v = version(&m);
    if v != MARKER_VERSION_1 {
        return Err(Error::invalid_object(
            store.to_string(),
            path.to_string(),
            format!(
                "unexpected {} version {v}, expected {MARKER_VERSION_1}",
                kind.filename()
            ),
        ));
    }
    Ok(Some(m))
}

/// The block's deletion mark, None when it has none.
pub async fn read_deletion_mark(store: &dyn ObjectStore, id: Ulid) -> Result<Option<DeletionMark>> {
    read_marker(store, id, MarkerKind::Deletion, |m: &DeletionMark| {
        m.version
    })
    .await
}

/// The block's no-compact mark, None when it has none.
pub async fn read_no_compact_mark(
    store: &dyn ObjectStore,
    id: Ulid,
) -> Result<Option<NoCompactMark>> {
    read_marker(store, id, MarkerKind::NoCompact, |m: &NoCompactMark| {
        m.version
    })
    .await
}

/// The block's no-downsample mark, None when it has none.
pub async fn read_no_downsample_mark(
    store: &dyn ObjectStore,
    id: Ulid,
) -> Result<Option<NoDownsampleMark>> {
    read_marker(
        store,
        id,
        MarkerKind::NoDownsample,
        |m: &NoDownsampleMark| m.version,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    const ID: &str = "01GZ6X0Q3N0000000000000000";

    #[test]
    fn json_matches_thanos() {
        let id = Ulid::from_string(ID).unwrap();
        let d = DeletionMark {
            id,
            version: 1,
            details: String::new(),
            deletion_time: 1700000000,
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            format!(r#"{{"id":"{ID}","version":1,"deletion_time":1700000000}}"#)
        );
        let n = NoCompactMark {
            id,
            version: 1,
            details: "big".into(),
            no_compact_time: 5,
            reason: NoCompactReason::IndexSizeExceeding,
        };
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            format!(
                r#"{{"id":"{ID}","version":1,"details":"big","no_compact_time":5,"reason":"index-size-exceeding"}}"#
            )
        );
        let nd = NoDownsampleMark {
            id,
            version: 1,
            details: String::new(),
            no_downsample_time: 7,
            reason: "manual".into(),
        };
        assert_eq!(
            serde_json::to_string(&nd).unwrap(),
            format!(r#"{{"id":"{ID}","version":1,"no_downsample_time":7,"reason":"manual"}}"#)
        );
        // As Thanos writes them (Go's encoding/json), including unknown reasons.
        let go = format!(
            r#"{{"id":"{ID}","version":1,"details":"x","no_compact_time":1,"reason":"some-future-reason"}}"#
        );
        let back: NoCompactMark = serde_json::from_str(&go).unwrap();
        assert_eq!(
            back.reason,
            NoCompactReason::Other("some-future-reason".into())
        );
        assert_eq!(serde_json::to_string(&back).unwrap(), go);
        for r in [
            NoCompactReason::Manual,
            NoCompactReason::IndexSizeExceeding,
            NoCompactReason::OutOfOrderChunks,
            NoCompactReason::DownsampleVerticalCompaction,
        ] {
            assert_eq!(NoCompactReason::parse(r.as_str()), r);
        }
        assert_eq!(
            MarkerKind::from_filename("no-compact-mark.json"),
            Some(MarkerKind::NoCompact)
        );
        assert_eq!(MarkerKind::from_filename("meta.json"), None);
    }

    #[tokio::test]
    async fn round_trip_in_memory() {
        let store = InMemory::new();
        let id = Ulid::new();
        assert_eq!(read_deletion_mark(&store, id).await.unwrap(), None);
        assert!(mark_for_deletion(&store, id, "compacted").await.unwrap());
        assert!(!mark_for_deletion(&store, id, "again").await.unwrap());
        let m = read_deletion_mark(&store, id).await.unwrap().unwrap();
        assert_eq!((m.id, m.version, m.details.as_str()), (id, 1, "compacted"));
        assert!(m.deletion_time > 1_600_000_000);
        remove_marker(&store, id, MarkerKind::Deletion)
            .await
            .unwrap();
        remove_marker(&store, id, MarkerKind::Deletion)
            .await
            .unwrap();
        assert_eq!(read_deletion_mark(&store, id).await.unwrap(), None);

        // A wrong version or bad JSON is an error naming the key.
        store
            .put(
                &MarkerKind::NoCompact.path(id),
                PutPayload::from_static(b"{\"id\":\"x\""),
            )
            .await
            .unwrap();
        let e = read_no_compact_mark(&store, id)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{id}/no-compact-mark.json")), "{e}");
        let v2 = format!(r#"{{"id":"{id}","version":2,"no_compact_time":1,"reason":"manual"}}"#);
        store
            .put(
                &MarkerKind::NoCompact.path(id),
                PutPayload::from(v2.into_bytes()),
            )
            .await
            .unwrap();
        let e = read_no_compact_mark(&store, id)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 2"), "{e}");
    }
}
