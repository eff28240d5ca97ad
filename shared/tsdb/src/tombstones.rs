//! The `tombstones` file of a block: deleted time ranges per series, as
//! Prometheus's `tsdb/tombstones` writes it.
//!
//! Layout (from Go's `WriteFile`/`Encode`/`ReadTombstones`):
//!
//! ```text
//! magic 0x0130BA30 (4 bytes, big-endian)
//! version 1 (1 byte)
//! per interval: uvarint series_ref | varint mint | varint maxt
//! CRC32-Castagnoli of the intervals (version byte excluded), big-endian
//! ```
//!
//! A series with several intervals has one entry per interval (there is no count).
//! Prometheus writes a file with no intervals (9 bytes) for every block.

use std::collections::BTreeMap;

use crate::encoding::{crc32c, Decbuf, Encbuf};
use crate::{Error, Result};

/// Magic number at the start of a tombstones file.
pub const MAGIC_TOMBSTONES: u32 = 0x0130_BA30;
/// The only tombstones format version.
pub const TOMBSTONES_FORMAT_V1: u8 = 1;

const WHAT: &str = "tombstones";
/// Magic + version.
const HEADER_SIZE: usize = 5;
const CRC_SIZE: usize = 4;

/// A deleted time range, both ends inclusive (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    pub mint: i64,
    pub maxt: i64,
}

impl Interval {
    /// Whether `t` lies in the interval.
    pub fn contains(&self, t: i64) -> bool {
        self.mint <= t && t <= self.maxt
    }
}

/// Deleted intervals by series reference. Each series' intervals are kept sorted
/// and merged (adjacent or overlapping intervals become one), as Prometheus's
/// `Intervals.Add` keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    series: BTreeMap<u64, Vec<Interval>>,
}

impl Tombstones {
    /// No deletions.
    pub fn new() -> Self {
        Tombstones::default()
    }

    /// Marks `interval` of series `series_ref` deleted, merging with what is
    /// already deleted.
    pub fn add(&mut self, series_ref: u64, interval: Interval) {
        add_interval(self.series.entry(series_ref).or_default(), interval);
    }

    /// The deleted intervals of a series, sorted (empty if none).
    pub fn get(&self, series_ref: u64) -> &[Interval] {
        self.series.get(&series_ref).map_or(&[], Vec::as_slice)
    }

    /// Whether sample time `t` of series `series_ref` is deleted.
    pub fn is_deleted(&self, series_ref: u64, t: i64) -> bool {
        self.get(series_ref).iter().any(|iv| iv.contains(t))
    }

    /// Whether nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of intervals over all series (Prometheus's `Total`, the
    /// `numTombstones` of `meta.json`).
    pub fn total(&self) -> u64 {
        self.series.values().map(|v| v.len() as u64).sum()
    }

    /// Series with deletions and their intervals, by series reference.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[Interval])> + '_ {
        self.series.iter().map(|(r, v)| (*r, v.as_slice()))
    }
}

/// Go's `Intervals.Add`: inserts `n` into sorted, non-overlapping `ivs`, merging
/// it with every interval it overlaps or touches (closed integer intervals).
fn add_interval(ivs: &mut Vec<Interval>, n: Interval) {
    if ivs.is_empty() {
        ivs.push(n);
        return;
    }
    // First interval that ends at or after n.mint - 1.
    let mut mini = 0;
    if n.mint != i64::MIN {
        mini = ivs.partition_point(|iv| iv.maxt < n.mint - 1);
        if mini == ivs.len() {
            ivs.push(n);
            return;
        }
    }
    // Number of intervals from `mini` on that start at or before n.maxt + 1.
    let mut maxi = ivs.len() - mini;
    if n.maxt != i64::MAX {
        maxi = ivs[mini..].partition_point(|iv| iv.mint <= n.maxt + 1);
        if maxi == 0 {
            ivs.insert(mini, n);
            return;
        }
    }
    let last = ivs[mini + maxi - 1].maxt;
    let first = &mut ivs[mini];
    if n.mint < first.mint {
        first.mint = n.mint;
    }
    first.maxt = last;
    if n.maxt > first.maxt {
        first.maxt = n.maxt;
    }
    ivs.drain(mini + 1..mini + maxi);
}

/// Decodes a tombstones file. A bad magic, a checksum mismatch or undecodable
/// entries are errors; an unknown version is [`Error::Unsupported`].
pub fn read(bytes: &[u8]) -> Result<Tombstones> {
    if bytes.len() < HEADER_SIZE + CRC_SIZE {
        return Err(Error::corrupt(
            WHAT,
            format!("{} bytes, shorter than header and checksum", bytes.len()),
        ));
    }
    let mut d = Decbuf::new(bytes, WHAT);
    let magic = d.be_u32()?;
    if magic != MAGIC_TOMBSTONES {
        return Err(Error::corrupt(WHAT, format!("bad magic {magic:#010x}")));
    }
    let version = d.byte()?;
    if version != TOMBSTONES_FORMAT_V1 {
        return Err(Error::Unsupported {
            what: "tombstones version".into(),
            detail: version.to_string(),
        });
    }
    let body = &bytes[HEADER_SIZE..bytes.len() - CRC_SIZE];
    let tail = &bytes[bytes.len() - CRC_SIZE..];
    let stored = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crc32c(body);
    if stored != computed {
        return Err(Error::Checksum {
            what: WHAT.into(),
            stored,
            computed,
        });
    }
    let mut t = Tombstones::new();
    let mut d = Decbuf::new(body, WHAT);
    while d.remaining() > 0 {
        let series_ref = d.uvarint()?;
        let mint = d.varint()?;
        let maxt = d.varint()?;
        t.add(series_ref, Interval { mint, maxt });
    }
    Ok(t)
}

/// Encodes a complete tombstones file (header, intervals in series order,
/// checksum).
pub fn encode(tombstones: &Tombstones) -> Vec<u8> {
    let mut e = Encbuf::new();
    e.put_be_u32(MAGIC_TOMBSTONES);
    e.put_byte(TOMBSTONES_FORMAT_V1);
    for (series_ref, ivs) in tombstones.iter() {
        for iv in ivs {
            e.put_uvarint(series_ref);
            e.put_varint(iv.mint);
            e.put_varint(iv.maxt);
        }
    }
    e.put_crc32_of(HEADER_SIZE);
    e.buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn iv(mint: i64, maxt: i64) -> Interval {
        Interval { mint, maxt }
    }

    #[test]
    fn empty_file_is_nine_bytes() {
        let b = encode(&Tombstones::default());
        assert_eq!(b, vec![0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
        assert!(read(&b).unwrap().is_empty());
    }

    #[test]
    fn known_bytes() {
        let mut t = Tombstones::new();
        t.add(1, iv(0, 10));
        t.add(300, iv(-5, 5));
        let b = encode(&t);
        let body = [1u8, 0, 20, 0xac, 0x02, 9, 10];
        let mut want = vec![0x01, 0x30, 0xBA, 0x30, 0x01];
        want.extend_from_slice(&body);
        want.extend_from_slice(&crc32c(&body).to_be_bytes());
        assert_eq!(b, want);
        let r = read(&b).unwrap();
        assert_eq!(r, t);
        assert!(r.is_deleted(1, 10));
        assert!(!r.is_deleted(1, 11));
        assert!(r.is_deleted(300, -5));
        assert!(!r.is_deleted(2, 0));
        assert_eq!(r.total(), 2);
    }

    #[test]
    fn intervals_merge_like_prometheus() {
        let mut v = Vec::new();
        for (a, b) in [(10, 20), (30, 40), (0, 5), (21, 29)] {
            add_interval(&mut v, iv(a, b));
        }
        // (21, 29) touches both neighbours; (0, 5) stays apart from (10, 20).
        assert_eq!(v, vec![iv(0, 5), iv(10, 40)]);
        add_interval(&mut v, iv(6, 9));
        assert_eq!(v, vec![iv(0, 40)]);
        add_interval(&mut v, iv(50, i64::MAX));
        add_interval(&mut v, iv(i64::MIN, -10));
        add_interval(&mut v, iv(45, i64::MAX));
        assert_eq!(v, vec![iv(i64::MIN, -10), iv(0, 40), iv(45, i64::MAX)]);
        add_interval(&mut v, iv(i64::MIN, i64::MAX));
        assert_eq!(v, vec![iv(i64::MIN, i64::MAX)]);
    }

    #[test]
    fn corruption() {
        let mut t = Tombstones::new();
        t.add(7, iv(1, 2));
        let b = encode(&t);
        for cut in 0..b.len() {
            assert!(read(&b[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            let r = read(&c);
            if i == 4 {
                assert!(matches!(r, Err(Error::Unsupported { .. })));
            } else {
                assert!(r.is_err(), "flip at {i}");
            }
        }
        // Valid checksum over undecodable entries.
        let body = [0x80u8];
        let mut c = vec![0x01, 0x30, 0xBA, 0x30, 0x01, 0x80];
        c.extend_from_slice(&crc32c(&body).to_be_bytes());
        assert!(matches!(read(&c), Err(Error::Corrupt { .. })));
    }

    proptest! {
        #[test]
        fn round_trip(entries in proptest::collection::vec((0u64..20, any::<i64>(), any::<i64>()), 0..40)) {
            let mut t = Tombstones::new();
            for (r, a, b) in &entries {
                let (lo, hi) = if a <= b { (*a, *b) } else { (*b, *a) };
                t.add(*r, iv(lo, hi));
            }
            for (_, ivs) in t.iter() {
                for w in ivs.windows(2) {
                    prop_assert!(w[0].maxt < w[1].mint.saturating_sub(1));
                }
            }
            let b = encode(&t);
            prop_assert_eq!(read(&b).unwrap(), t.clone());
            for (r, a, _) in &entries {
                let naive = entries.iter().any(|(r2, x, y)| r2 == r && (*x.min(y)..=*x.max(y)).contains(a));
                prop_assert_eq!(t.is_deleted(*r, *a), naive);
            }
        }

        #[test]
        fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..100), fix_crc in any::<bool>()) {
            let mut b = vec![0x01, 0x30, 0xBA, 0x30, 0x01];
            b.extend_from_slice(&body);
            if fix_crc {
                b.extend_from_slice(&crc32c(&body).to_be_bytes());
            }
            let _ = read(&b);
            let _ = read(&body);
        }
    }
}
