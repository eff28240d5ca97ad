//! `meta.json`: Prometheus's block meta plus the `thanos` section that Thanos and
//! Aether add in a bucket. Fields this crate doesn't know are kept and written back,
//! so reading and rewriting a meta never loses what another tool put there.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ulid::Ulid;

use crate::{Error, Result};

/// The file name of a block's meta.
pub const META_FILENAME: &str = "meta.json";
/// Downsampling resolutions Thanos uses, in milliseconds.
pub const RES_RAW: i64 = 0;
pub const RES_5M: i64 = 300_000;
pub const RES_1H: i64 = 3_600_000;

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    #[serde(with = "ulid_string")]
    pub ulid: Ulid,
    /// First timestamp in the block (inclusive), ms.
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// End of the block's range (exclusive), ms.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    pub compaction: Compaction,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockStats {
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(rename = "numFloatSamples", default, skip_serializing_if = "is_zero")]
    pub num_float_samples: u64,
    #[serde(
        rename = "numHistogramSamples",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub num_histogram_samples: u64,
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    pub level: u32,
    #[serde(default, with = "ulid_vec")]
    pub sources: Vec<Ulid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// A parent block of a compacted block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDesc {
    #[serde(with = "ulid_string")]
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// The `thanos` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    pub version: u32,
    /// External labels of the stream the block belongs to.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: Downsample,
    /// Who made the block: sidecar, compactor, ruler, receive, bucket.upload, ...
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_stats: Option<IndexStats>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    /// Resolution in ms: 0 (raw), 300000 (5m) or 3600000 (1h).
    pub resolution: i64,
}

/// One file of a block as listed in `thanos.files`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub series_max_size: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub chunk_max_size: i64,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

impl ThanosMeta {
    /// A `thanos` section for a raw block from `source` with the given external labels.
    pub fn new(source: &str, labels: BTreeMap<String, String>) -> Self {
        ThanosMeta {
            version: 1,
            labels,
            downsample: Downsample::default(),
            source: source.to_string(),
            segment_files: Vec::new(),
            files: Vec::new(),
            index_stats: None,
            extra: Map::new(),
        }
    }
}

impl BlockMeta {
    /// A fresh level-1 meta for a new block.
    pub fn new(ulid: Ulid, min_time: i64, max_time: i64) -> Self {
        BlockMeta {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: Compaction {
                level: 1,
                sources: vec![ulid],
                parents: Vec::new(),
                failed: false,
                deletable: false,
                hints: Vec::new(),
            },
            version: 1,
            thanos: None,
            extra: Map::new(),
        }
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let m: BlockMeta = serde_json::from_slice(bytes)?;
        if m.version != 1 {
            return Err(Error::Unsupported {
                what: "meta.json version".into(),
                detail: m.version.to_string(),
            });
        }
        if m.max_time < m.min_time {
            return Err(Error::corrupt(
                "meta.json",
                format!("maxTime {} before minTime {}", m.max_time, m.min_time),
            ));
        }
        Ok(m)
    }

    /// JSON as Prometheus writes it (tab-indented).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser)
            .expect("serializing a BlockMeta to memory cannot fail");
        out
    }

    /// Reads `DIR/meta.json`.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let p = dir.join(META_FILENAME);
        let b = std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
        Self::from_json(&b)
    }

    /// Writes `DIR/meta.json` atomically (temp file, fsync, rename).
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        let p = dir.join(META_FILENAME);
        let tmp = dir.join(format!("{META_FILENAME}.tmp"));
        let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
            f.write_all(&self.to_json()).map_err(|e| io("write", e))?;
            f.sync_all().map_err(|e| io("fsync", e))?;
        }
        std::fs::rename(&tmp, &p).map_err(|e| io("rename", e))?;
        Ok(())
    }

    /// The downsampling resolution (0 when there is no thanos section).
    pub fn resolution(&self) -> i64 {
        self.thanos.as_ref().map_or(0, |t| t.downsample.resolution)
    }
}

mod ulid_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        Ulid::from_string(&s).map_err(|e| serde::de::Error::custom(format!("bad ULID {s:?}: {e}")))
    }
}

mod ulid_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(v: &[Ulid], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ulid>, D::Error> {
        let v = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
        v.iter()
            .map(|s| {
                Ulid::from_string(s)
                    .map_err(|e| serde::de::Error::custom(format!("bad ULID {s:?}: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_META: &str = r#"{
	"ulid": "01GZ6X0Q3N0000000000000000",
	"minTime": 1680000000000,
	"maxTime": 1680007200000,
	"stats": {
		"numSamples": 480,
		"numSeries": 2,
		"numChunks": 4
	},
	"compaction": {
		"level": 1,
		"sources": [
			"01GZ6X0Q3N0000000000000000"
		]
	},
	"version": 1
}"#;

    const THANOS_META: &str = r#"{"ulid":"01GZ6X0Q3N0000000000000000","minTime":1,"maxTime":2,
      "stats":{"numSamples":1,"numSeries":1,"numChunks":1},
      "compaction":{"level":2,"sources":["01GZ6X0Q3N0000000000000000"],
        "parents":[{"ulid":"01GZ6X0Q3N0000000000000000","minTime":1,"maxTime":2}]},
      "version":1,
      "thanos":{"version":1,"labels":{"cluster":"a","replica":"0"},
        "downsample":{"resolution":300000},"source":"compactor",
        "files":[{"rel_path":"chunks/000001","size_bytes":10},{"rel_path":"meta.json"}],
        "index_stats":{"series_max_size":100},
        "rewrites":[{"sources":[]}],
        "upload_time":"2024-01-01T00:00:00Z"},
      "someFutureField":{"x":1}}"#;

    #[test]
    fn prometheus_meta_round_trips_byte_for_byte() {
        let m = BlockMeta::from_json(PROMETHEUS_META.as_bytes()).unwrap();
        assert_eq!(m.stats.num_samples, 480);
        assert!(m.thanos.is_none());
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), PROMETHEUS_META);
    }

    #[test]
    fn thanos_meta_keeps_unknown_fields() {
        let m = BlockMeta::from_json(THANOS_META.as_bytes()).unwrap();
        let t = m.thanos.as_ref().unwrap();
        assert_eq!(m.resolution(), RES_5M);
        assert_eq!(t.labels["cluster"], "a");
        assert_eq!(t.files[1].size_bytes, 0);
        let again: Value = serde_json::from_slice(&m.to_json()).unwrap();
        let orig: Value = serde_json::from_str(THANOS_META).unwrap();
        assert_eq!(again, orig);
    }

    #[test]
    fn bad_meta_is_an_error() {
        assert!(BlockMeta::from_json(b"{").is_err());
        assert!(BlockMeta::from_json(b"{\"ulid\":\"nope\"}").is_err());
        let v2 = PROMETHEUS_META.replace("\"version\": 1", "\"version\": 2");
        assert!(BlockMeta::from_json(v2.as_bytes()).is_err());
        let backwards = PROMETHEUS_META.replace("1680007200000", "1");
        assert!(BlockMeta::from_json(backwards.as_bytes()).is_err());
    }

    #[test]
    fn write_and_read_dir() {
        let d = tempfile::tempdir().unwrap();
        let mut m = BlockMeta::new(Ulid::new(), 0, 10);
        m.thanos = Some(ThanosMeta::new(
            "sidecar",
            [("a".into(), "b".into())].into(),
        ));
        m.write_dir(d.path()).unwrap();
        assert_eq!(BlockMeta::read_dir(d.path()).unwrap(), m);
    }
}
