//! A `SeriesRequest`, `LabelNamesRequest` or `LabelValuesRequest` from a client
//! (untrusted), answered by an in-memory store: decoding, matcher conversion
//! (regular expressions included) and selection. Bad requests must come back as
//! errors, never as panics or runaway work.

#![no_main]

use std::sync::LazyLock;

use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use model::Labels;
use prost::Message;
use storeapi::{pb, MemStore, StoreApi};

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
});

static STORE: LazyLock<MemStore> = LazyLock::new(|| {
    let mut s = MemStore::new(Labels::from_pairs([("replica", "a")]));
    for (i, job) in ["api", "db", "web"].iter().enumerate() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", job)]);
        let samples: Vec<(i64, f64)> = (0..300).map(|t| (t * 15_000, (t + i as i64) as f64)).collect();
        s.add_series(&labels, &samples);
    }
    s
});

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    RT.block_on(async {
        match which % 3 {
            0 => {
                if let Ok(req) = pb::SeriesRequest::decode(rest) {
                    let _ = storeapi::convert::matchers_from_pb(&req.matchers);
                    if let Ok(mut stream) = STORE.series(req).await {
                        let mut frames = 0;
                        while let Some(f) = stream.next().await {
                            frames += 1;
                            assert!(frames < 10_000, "runaway stream");
                            if f.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            1 => {
                if let Ok(req) = pb::LabelNamesRequest::decode(rest) {
                    let _ = STORE.label_names(req).await;
                }
            }
            _ => {
                if let Ok(req) = pb::LabelValuesRequest::decode(rest) {
                    let _ = STORE.label_values(req).await;
                }
            }
        }
    });
});
