//! A `SeriesResponse` frame from a store (untrusted: any store on the network can
//! answer a querier): protobuf decoding, label conversion, and every chunk's
//! samples. May fail, must not panic, loop or allocate without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use storeapi::pb::{self, series_response::Result as R};

fn series(s: &pb::Series) {
    let _ = storeapi::convert::series_labels(s);
    for aggr in &s.chunks {
        for c in [&aggr.raw, &aggr.count, &aggr.sum, &aggr.min, &aggr.max, &aggr.counter]
            .into_iter()
            .flatten()
        {
            if let Ok(it) = storeapi::chunk::iter_wire_chunk(c) {
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
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = pb::SeriesResponse::decode(data) else {
        return;
    };
    match frame.result {
        Some(R::Series(s)) => series(&s),
        Some(R::Batch(b)) => b.series.iter().for_each(series),
        _ => {}
    }
});
