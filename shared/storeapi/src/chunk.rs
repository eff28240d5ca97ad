//! Chunk helpers: the wire's 0-based encoding numbers against Prometheus's on-disk
//! encoding bytes, the optional xxhash64 of chunk data, and decoding a wire chunk.

use tsdb::chunkenc::{ChunkIter, Encoding};

use crate::pb::{self, chunk::Encoding as WireEncoding};
use crate::{Error, Result};

/// The on-disk encoding of a wire encoding (XOR 0 -> 1, HISTOGRAM 1 -> 2,
/// FLOAT_HISTOGRAM 2 -> 3).
pub fn wire_to_disk(e: WireEncoding) -> Encoding {
    match e {
        WireEncoding::Xor => Encoding::Xor,
        WireEncoding::Histogram => Encoding::Histogram,
        WireEncoding::FloatHistogram => Encoding::FloatHistogram,
    }
}

/// The wire encoding of an on-disk encoding (XOR 1 -> 0, Histogram 2 -> 1,
/// FloatHistogram 3 -> 2).
pub fn disk_to_wire(e: Encoding) -> WireEncoding {
    match e {
        Encoding::Xor => WireEncoding::Xor,
        Encoding::Histogram => WireEncoding::Histogram,
        Encoding::FloatHistogram => WireEncoding::FloatHistogram,
    }
}

/// The on-disk encoding of a received chunk's `type` field; an unknown number
/// is [`Error::Corrupt`].
pub fn chunk_encoding(c: &pb::Chunk) -> Result<Encoding> {
    WireEncoding::try_from(c.r#type)
        .map(wire_to_disk)
        .map_err(|_| Error::Corrupt(format!("unknown chunk encoding {} on the wire", c.r#type)))
}

/// xxhash64 (seed 0) of chunk data: the optional `Chunk.hash` field.
pub fn chunk_hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(data, 0)
}

/// A wire chunk from on-disk encoding and data; `with_hash` fills the xxhash64.
pub fn wire_chunk(encoding: Encoding, data: Vec<u8>, with_hash: bool) -> pb::Chunk {
    let hash = if with_hash { chunk_hash(&data) } else { 0 };
    pb::Chunk {
        r#type: disk_to_wire(encoding) as i32,
        data,
        hash,
    }
}

/// A raw (not downsampled) `AggrChunk` covering `[min_time, max_time]`.
pub fn raw_aggr_chunk(min_time: i64, max_time: i64, chunk: pb::Chunk) -> pb::AggrChunk {
    pb::AggrChunk {
        min_time,
        max_time,
        raw: Some(chunk),
        ..Default::default()
    }
}

/// Whether the chunk's hash is absent (0) or matches its data.
pub fn hash_ok(c: &pb::Chunk) -> bool {
    c.hash == 0 || c.hash == chunk_hash(&c.data)
}

/// Iterates the samples of a received chunk. Unknown encodings, a hash that does
/// not match and data too short for its header are errors; the iterator itself
/// yields an error (then ends) on corrupt data. Never panics.
pub fn iter_wire_chunk(c: &pb::Chunk) -> Result<ChunkIter<'_>> {
    let enc = chunk_encoding(c)?;
    if !hash_ok(c) {
        return Err(Error::Corrupt(format!(
            "chunk hash {:#018x} does not match its data",
            c.hash
        )));
    }
    Ok(tsdb::chunkenc::iter_chunk(enc as u8, &c.data)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::chunkenc::{SampleValue, XorChunk};

    #[test]
    fn encoding_numbers() {
        for (wire, disk) in [(0, 1u8), (1, 2), (2, 3)] {
            let w = WireEncoding::try_from(wire).unwrap();
            assert_eq!(wire_to_disk(w) as u8, disk);
            assert_eq!(disk_to_wire(Encoding::from_u8(disk).unwrap()) as i32, wire);
        }
        let c = pb::Chunk {
            r#type: 9,
            ..Default::default()
        };
        assert!(matches!(chunk_encoding(&c), Err(Error::Corrupt(_))));
    }

    #[test]
    fn hash_is_xxhash64_seed_0() {
        // Reference values of XXH64 with seed 0.
        assert_eq!(chunk_hash(b""), 0xef46db3751d8e999);
        assert_eq!(chunk_hash(b"abc"), 0x44bc2cf5ad770999);
    }

    #[test]
    fn wire_chunk_decodes() {
        let mut x = XorChunk::new();
        x.append(10, 1.0);
        x.append(20, 2.0);
        let mut c = wire_chunk(Encoding::Xor, x.bytes().to_vec(), true);
        assert_eq!(c.r#type, 0);
        assert!(hash_ok(&c));
        let got: Vec<_> = iter_wire_chunk(&c).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(
            got,
            vec![(10, SampleValue::Float(1.0)), (20, SampleValue::Float(2.0))]
        );
        c.hash ^= 1;
        assert!(matches!(iter_wire_chunk(&c), Err(Error::Corrupt(_))));
    }
}
