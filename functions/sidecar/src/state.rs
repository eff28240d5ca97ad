//! The shipper's state file, `thanos.shipper.json` in the TSDB directory, in
//! Thanos's format: `{"version": 1, "uploaded": ["<ULID>", ...]}` (tab-indented as
//! Thanos writes it). A Thanos sidecar can take over an Aether sidecar's TSDB
//! directory and the other way round.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::{Error, Result};

/// File name of the state file in the TSDB directory.
pub const STATE_FILENAME: &str = "thanos.shipper.json";
/// The only state file version.
pub const STATE_VERSION: u32 = 1;

/// What the shipper has uploaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipperState {
    pub version: u32,
    /// Blocks known to be complete in the bucket, in the order they were recorded.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub uploaded: Vec<Ulid>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Ulid>, D::Error> {
    Ok(Option::<Vec<Ulid>>::deserialize(d)?.unwrap_or_default())
}

impl ShipperState {
    /// An empty state.
    pub fn new() -> Self {
        ShipperState {
            version: STATE_VERSION,
            uploaded: Vec::new(),
        }
    }

    /// Whether `id` is recorded as uploaded.
    pub fn contains(&self, id: Ulid) -> bool {
        self.uploaded.contains(&id)
    }

    /// Records `id` (once).
    pub fn add(&mut self, id: Ulid) {
        if !self.contains(id) {
            self.uploaded.push(id);
        }
    }

    /// The JSON Thanos writes (`json.MarshalIndent(meta, "", "\t")`).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser)
            .expect("serializing the shipper state to memory cannot fail");
        out
    }

    /// Parses a state file's bytes.
    pub fn from_json(b: &[u8]) -> std::result::Result<Self, String> {
        let s: ShipperState = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        if s.version != STATE_VERSION {
            return Err(format!("unsupported version {}", s.version));
        }
        Ok(s)
    }
}

/// Path of the state file in `tsdb_dir`.
pub fn state_path(tsdb_dir: &Path) -> PathBuf {
    tsdb_dir.join(STATE_FILENAME)
}

/// Reads the state file. A missing file is an empty state; an unreadable or
/// corrupt one is logged and treated as empty too (the bucket is then asked about
/// every block before uploading it, so nothing is uploaded twice).
pub fn read_state(tsdb_dir: &Path) -> Result<ShipperState> {
    let p = state_path(tsdb_dir);
    match std::fs::read(&p) {
        Ok(b) => match ShipperState::from_json(&b) {
            Ok(s) => Ok(s),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e,
                    "shipper state file is corrupt; starting from an empty state (the bucket is checked before each upload)");
                Ok(ShipperState::new())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ShipperState::new()),
        Err(e) => Err(Error::local("reading", p, e)),
    }
}

/// Writes the state file atomically: a temporary file, fsync, rename over the old
/// one, fsync of the directory. A crash leaves either the old or the new file.
pub fn write_state(tsdb_dir: &Path, state: &ShipperState) -> Result<()> {
    let p = state_path(tsdb_dir);
    let tmp = tsdb_dir.join(format!("{STATE_FILENAME}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::local("creating", &tmp, e))?;
        f.write_all(&state.to_json())
            .map_err(|e| Error::local("writing", &tmp, e))?;
        f.sync_all().map_err(|e| Error::local("fsync", &tmp, e))?;
    }
    std::fs::rename(&tmp, &p).map_err(|e| Error::local("renaming into place", &p, e))?;
    sync_dir(tsdb_dir);
    Ok(())
}

/// fsyncs a directory (best effort: some filesystems refuse).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thanos_format_round_trips() {
        // As Thanos v0.3x writes it.
        let thanos = "{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"01GZ6X0Q3N0000000000000000\",\n\t\t\"01GZ6X0Q3N0000000000000001\"\n\t]\n}";
        let s = ShipperState::from_json(thanos.as_bytes()).unwrap();
        assert_eq!(s.uploaded.len(), 2);
        assert_eq!(String::from_utf8(s.to_json()).unwrap(), thanos);
        // Go writes a nil slice as null.
        let s = ShipperState::from_json(b"{\"version\":1,\"uploaded\":null}").unwrap();
        assert!(s.uploaded.is_empty());
        assert!(ShipperState::from_json(b"{\"version\":2,\"uploaded\":[]}").is_err());
    }

    #[test]
    fn write_read_and_corrupt() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_state(d.path()).unwrap(), ShipperState::new());
        let mut s = ShipperState::new();
        let id = Ulid::new();
        s.add(id);
        s.add(id);
        write_state(d.path(), &s).unwrap();
        assert_eq!(read_state(d.path()).unwrap().uploaded, vec![id]);
        assert!(!d.path().join("thanos.shipper.json.tmp").exists());
        std::fs::write(state_path(d.path()), b"{not json").unwrap();
        assert_eq!(read_state(d.path()).unwrap(), ShipperState::new());
    }
}
