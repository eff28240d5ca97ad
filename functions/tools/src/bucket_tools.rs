//! `aether tools bucket …`: operator tools over a bucket of blocks.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use bucket::ObjstoreConfig;
use tsdb::meta::{BlockMeta, ThanosMeta};

use crate::{Error, Result};

/// Loads the objstore config from a file or inline YAML.
pub fn load_config(file: Option<&str>, inline: Option<&str>) -> Result<ObjstoreConfig> {
    match (file, inline) {
        (Some(f), _) => Ok(ObjstoreConfig::from_file(f)?),
        (None, Some(y)) => Ok(ObjstoreConfig::parse(y)?),
        (None, None) => Err(Error::Usage(
            "no bucket configured: give --objstore.config-file FILE or --objstore.config YAML"
                .into(),
        )),
    }
}

/// Parses `name=value` (value optionally double-quoted) as Thanos's `--label` takes it.
pub fn parse_label(s: &str) -> Result<(String, String)> {
    let (n, v) = s
        .split_once('=')
        .ok_or_else(|| Error::Usage(format!("invalid label {s:?}: want name=value")))?;
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Usage(format!("invalid label name {n:?}")));
    }
    Ok((n.to_string(), v.to_string()))
}

/// Uploads every block directory under `path` that the bucket doesn't have yet,
/// adding a `thanos` section (external `labels`, source `bucket.upload`) when the
/// block has none. Returns how many blocks were uploaded and skipped.
pub async fn upload_blocks(
    cfg: &ObjstoreConfig,
    path: &Path,
    labels: &BTreeMap<String, String>,
    mut out: impl Write,
) -> Result<(usize, usize)> {
    let store = cfg.build()?;
    let mut dirs: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(tsdb::meta::META_FILENAME).is_file())
        .collect();
    dirs.sort();
    let (mut uploaded, mut skipped) = (0, 0);
    for dir in dirs {
        let mut meta = BlockMeta::read_dir(&dir)?;
        if bucket::block_exists_complete(store.as_ref(), meta.ulid).await? {
            skipped += 1;
            continue;
        }
        let t = meta
            .thanos
            .get_or_insert_with(|| ThanosMeta::new("bucket.upload", BTreeMap::new()));
        if t.labels.is_empty() {
            t.labels = labels.clone();
        }
        let stats =
            bucket::upload_block_with(store.as_ref(), &dir, Some(&meta), &cfg.upload_options())
                .await?;
        writeln!(out, "uploaded {} ({} bytes)", meta.ulid, stats.bytes)
            .map_err(|e| Error::io("writing output", e))?;
        uploaded += 1;
    }
    Ok((uploaded, skipped))
}

/// Lists the bucket's blocks: one line each (`-o wide` style) or JSON metas.
pub async fn ls(cfg: &ObjstoreConfig, json: bool, mut out: impl Write) -> Result<()> {
    let store = cfg.build()?;
    let metas = bucket::list_block_metas(store.as_ref()).await?;
    let io = |e| Error::io("writing output", e);
    if json {
        for m in &metas.metas {
            let line = serde_json::to_string(m).map_err(|e| Error::Usage(e.to_string()))?;
            writeln!(out, "{line}").map_err(io)?;
        }
        return Ok(());
    }
    for m in &metas.metas {
        let labels: Vec<String> = m
            .thanos
            .as_ref()
            .map(|t| t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default();
        writeln!(
            out,
            "{} -- {} - {} res={} level={} series={} samples={} labels={{{}}}",
            m.ulid,
            m.min_time,
            m.max_time,
            m.resolution(),
            m.compaction.level,
            m.stats.num_series,
            m.stats.num_samples,
            labels.join(",")
        )
        .map_err(io)?;
    }
    for p in &metas.partial {
        writeln!(out, "{p} -- partial upload (no meta.json)").map_err(io)?;
    }
    for (id, why) in &metas.corrupted {
        writeln!(out, "{id} -- unreadable meta.json: {why}").map_err(io)?;
    }
    Ok(())
}

/// What `mark` did to one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkOutcome {
    Added,
    AlreadyMarked,
    Removed,
}

/// `mark`: adds (or with `remove`, deletes) the `marker` file
/// (`deletion-mark.json`, `no-compact-mark.json` or `no-downsample-mark.json`, as
/// Thanos names them) of each
/// block in `ids`, with `details`. No-compact and no-downsample marks carry reason `manual`.
/// Adding a mark to a block the bucket doesn't have is an error.
pub async fn mark(
    cfg: &ObjstoreConfig,
    ids: &[ulid::Ulid],
    marker: &str,
    details: &str,
    remove: bool,
    mut out: impl Write,
) -> Result<Vec<MarkOutcome>> {
    use bucket::markers::{self, MarkerKind, NoCompactReason};
    let Some(kind) = MarkerKind::from_filename(marker) else {
        return Err(Error::Usage(format!(
            "invalid --marker {marker:?}: want {}, {} or {}",
            markers::DELETION_MARK_FILENAME,
            markers::NO_COMPACT_MARK_FILENAME,
            markers::NO_DOWNSAMPLE_MARK_FILENAME
        )));
    };
    if !remove && details.trim().is_empty() {
        return Err(Error::Usage(
            "give --details: why the block is marked".into(),
        ));
    }
    let store = cfg.build()?;
    let io = |e| Error::io("writing output", e);
    let mut done = Vec::new();
    for &id in ids {
        let outcome = if remove {
            markers::remove_marker(store.as_ref(), id, kind).await?;
            MarkOutcome::Removed
        } else {
            if bucket::fetch_meta(store.as_ref(), id).await?.is_none() {
                return Err(Error::Usage(format!(
                    "block {id} not found in the bucket (no meta.json)"
                )));
            }
            let added = match kind {
                MarkerKind::Deletion => {
                    markers::mark_for_deletion(store.as_ref(), id, details).await?
                }
                MarkerKind::NoCompact => {
                    markers::mark_no_compact(store.as_ref(), id, NoCompactReason::Manual, details)
                        .await?
                }
                MarkerKind::NoDownsample => {
                    markers::mark_no_downsample(store.as_ref(), id, "manual", details).await?
                }
            };
            if added {
                MarkOutcome::Added
            } else {
                MarkOutcome::AlreadyMarked
            }
        };
        let what = match outcome {
            MarkOutcome::Added => "marked with",
            MarkOutcome::AlreadyMarked => "already has",
            MarkOutcome::Removed => "removed",
        };
        writeln!(out, "{id}: {what} {}", kind.filename()).map_err(io)?;
        done.push(outcome);
    }
    Ok(done)
}

/// Retention per resolution in ms (raw, 5m, 1h); 0 keeps blocks forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub raw: i64,
    pub res_5m: i64,
    pub res_1h: i64,
}

impl Retention {
    fn for_resolution(&self, res: i64) -> i64 {
        match res {
            tsdb::meta::RES_RAW => self.raw,
            tsdb::meta::RES_5M => self.res_5m,
            tsdb::meta::RES_1H => self.res_1h,
            _ => 0,
        }
    }
}

/// `retention`: marks for deletion (as the compactor's retention does) every block
/// whose maxTime is older than `now_ms` minus its resolution's retention. Blocks
/// already marked are left as they are. Returns the blocks newly marked.
pub async fn apply_retention(
    cfg: &ObjstoreConfig,
    retention: Retention,
    now_ms: i64,
    mut out: impl Write,
) -> Result<Vec<ulid::Ulid>> {
    let store = cfg.build()?;
    let metas = bucket::list_block_metas(store.as_ref()).await?;
    let io = |e| Error::io("writing output", e);
    let mut marked = Vec::new();
    let mut progress =
        crate::bucket_inspect::Progress::new("applying retention", metas.metas.len());
    for m in &metas.metas {
        progress.inc();
        let keep = retention.for_resolution(m.resolution());
        if keep <= 0 || m.max_time >= now_ms - keep {
            continue;
        }
        let details = format!(
            "block exceeds retention of {} for resolution {}",
            crate::bucket_inspect::go_duration(keep),
            crate::bucket_inspect::resolution_string(m.resolution())
        );
        if bucket::markers::mark_for_deletion(store.as_ref(), m.ulid, &details).await? {
            writeln!(out, "{}: marked for deletion ({details})", m.ulid).map_err(io)?;
            marked.push(m.ulid);
        }
    }
    progress.finish();
    Ok(marked)
}
