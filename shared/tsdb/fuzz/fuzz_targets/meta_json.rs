//! `meta.json` from arbitrary bytes: parsing may fail but must not panic, and a meta
//! that parses must survive a write/read round trip unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb::meta::BlockMeta;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = BlockMeta::from_json(data) {
        let again = BlockMeta::from_json(&m.to_json()).expect("our own JSON parses");
        assert_eq!(again, m);
    }
});
