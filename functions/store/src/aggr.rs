//! Chunks as stored -> StoreAPI chunks, without re-encoding: raw chunks keep their
//! bytes (encoding renumbered to the wire's 0-based values); Thanos aggregate
//! chunks (encoding 0xFF, downsampled blocks) are split into their five
//! sub-chunks (count, sum, min, max, counter), each `uvarint(len) | encoding |
//! data`, a lone length 0 meaning absent, and the requested ones sent.

use storeapi::pb;
use tsdb::chunkenc::ENCODING_AGGR;
use tsdb::chunks::RawChunk;
use tsdb::ChunkMeta;

/// Which aggregates a request asks for (`SeriesRequest.aggregates`): for
/// downsampled blocks; raw blocks always send their raw chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    pub count: bool,
    pub sum: bool,
    pub min: bool,
    pub max: bool,
    pub counter: bool,
}

impl Wanted {
    /// From the request's `aggregates` (enum numbers); none (or only RAW) means
    /// every aggregate present.
    pub fn from_request(aggrs: &[i32]) -> Wanted {
        use pb::Aggr;
        let mut w = Wanted::default();
        for &a in aggrs {
            match Aggr::try_from(a) {
                Ok(Aggr::Count) => w.count = true,
                Ok(Aggr::Sum) => w.sum = true,
                Ok(Aggr::Min) => w.min = true,
                Ok(Aggr::Max) => w.max = true,
                Ok(Aggr::Counter) => w.counter = true,
                _ => {}
            }
        }
        if w == Wanted::default() {
            w = Wanted {
                count: true,
                sum: true,
                min: true,
                max: true,
                counter: true,
            };
        }
        w
    }
}

fn read_uvarint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut x = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        x |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(x);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// A wire chunk from an on-disk encoding byte (1..=3) and data.
fn wire(encoding: u8, data: &[u8]) -> Result<pb::Chunk, String> {
    if !(1..=3).contains(&encoding) {
        return Err(format!("unsupported chunk encoding {encoding:#04x}"));
    }
    Ok(pb::Chunk {
        r#type: i32::from(encoding - 1),
        data: data.to_vec(),
        hash: 0,
    })
}

/// The five sub-chunks of an aggregate chunk's data (count, sum, min, max,
/// counter), `None` for absent ones.
pub fn split_aggregate(data: &[u8]) -> Result<[Option<pb::Chunk>; 5], String> {
    let mut out: [Option<pb::Chunk>; 5] = Default::default();
    let mut pos = 0;
    for slot in &mut out {
        if pos == data.len() {
            // Trailing absent aggregates may be left out entirely.
            break;
        }
        let len = read_uvarint(data, &mut pos).ok_or("aggregate chunk: bad length")? as usize;
        if len == 0 {
            continue;
        }
        let enc = *data.get(pos).ok_or("aggregate chunk: truncated")?;
        pos += 1;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or("aggregate chunk: sub-chunk runs past the end")?;
        *slot = Some(wire(enc, &data[pos..end])?);
        pos = end;
    }
    if pos != data.len() {
        return Err(format!(
            "aggregate chunk: {} trailing bytes",
            data.len() - pos
        ));
    }
    Ok(out)
}

/// The wire chunk for one stored chunk.
pub fn to_aggr_chunk(
    meta: &ChunkMeta,
    raw: &RawChunk,
    wanted: Wanted,
) -> Result<pb::AggrChunk, String> {
    let mut c = pb::AggrChunk {
        min_time: meta.min_time,
        max_time: meta.max_time,
        ..Default::default()
    };
    if raw.encoding == ENCODING_AGGR {
        let [count, sum, min, max, counter] = split_aggregate(&raw.data)?;
        c.count = count.filter(|_| wanted.count);
        c.sum = sum.filter(|_| wanted.sum);
        c.min = min.filter(|_| wanted.min);
        c.max = max.filter(|_| wanted.max);
        c.counter = counter.filter(|_| wanted.counter);
    } else {
        c.raw = Some(wire(raw.encoding, &raw.data)?);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn splits_aggregates() {
        // count (XOR, 3 bytes), sum absent, min (1 byte), max absent, counter (2 bytes)
        let data = vec![3, 1, 0xa, 0xb, 0xc, 0, 1, 1, 0x7, 0, 2, 1, 0x1, 0x2];
        let [count, sum, min, max, counter] = split_aggregate(&data).unwrap();
        assert_eq!(count.unwrap().data, vec![0xa, 0xb, 0xc]);
        assert!(sum.is_none() && max.is_none());
        assert_eq!(min.unwrap().data, vec![0x7]);
        assert_eq!(counter.clone().unwrap().data, vec![1, 2]);
        assert_eq!(counter.unwrap().r#type, 0);
        assert!(split_aggregate(&[5, 1, 0]).is_err());
        assert!(split_aggregate(&[1, 9, 0]).is_err());

        let raw = RawChunk {
            encoding: ENCODING_AGGR,
            data: Bytes::from(data),
        };
        let meta = ChunkMeta {
            min_time: 1,
            max_time: 2,
            chunk_ref: 0,
        };
        let c = to_aggr_chunk(&meta, &raw, Wanted::from_request(&[1, 5])).unwrap();
        assert!(c.count.is_some() && c.counter.is_some() && c.min.is_none() && c.raw.is_none());
        let x = RawChunk {
            encoding: 1,
            data: Bytes::from_static(&[0, 0]),
        };
        let c = to_aggr_chunk(&meta, &x, Wanted::default()).unwrap();
        assert_eq!(c.raw.unwrap().r#type, 0);
    }
}
