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
