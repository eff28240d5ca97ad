//! Chunk records and chunk data from arbitrary bytes: decoding may fail but must
//! not panic, loop or allocate without bound.
//!
//! The input is decoded two ways: as a segment record (`decode_chunk_record`, then
//! the chunk it holds) and, with the first byte as the encoding, as bare chunk data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb::chunkenc::iter_chunk;
use tsdb::chunks::decode_chunk_record;

fn drain(encoding: u8, data: &[u8]) {
    if let Ok(it) = iter_chunk(encoding, data) {
        let announced = it.num_samples();
        let mut n = 0usize;
        for s in it {
            n += 1;
            assert!(n <= announced, "more samples than the header announces");
            if s.is_err() {
                break;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok((encoding, chunk, len)) = decode_chunk_record(data) {
        assert!(len <= data.len());
        drain(encoding, chunk);
    }
    if let Some((&first, rest)) = data.split_first() {
        // Map onto the three real encodings most of the time.
        drain(first % 4, rest);
    }
});
