//! Fuzzes the index reader over arbitrary bytes: opening, label names and values,
//! postings and series must return errors on bad input, never panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tsdb::index::{IndexHeader, IndexReader};
use tsdb::BytesRange;

fuzz_target!(|data: &[u8]| {
    let file = Arc::new(BytesRange::new("fuzz", data.to_vec()));
    futures::executor::block_on(async move {
        let Ok(r) = IndexReader::open(file).await else {
            return;
        };
        let decoded = IndexHeader::decode(&r.header().encode()).expect("header round trip");
        assert_eq!(&decoded, &**r.header());
        for name in r.label_names() {
            let values = r.label_values(&name);
            for v in values.iter().take(16) {
                let _ = r.postings(&name, &[v]).await;
            }
            let _ = r.postings(&name, &values).await;
        }
        if let Ok(all) = r.all_postings().await {
            let _ = r.series_many(&all).await;
            for &s in all.iter().take(16) {
                let _ = r.series(s).await;
            }
        }
        for s in [0u64, 1, 2, u64::MAX / 16, u64::MAX] {
            let _ = r.series(s).await;
        }
    });
});
