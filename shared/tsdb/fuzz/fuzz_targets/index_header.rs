//! Fuzzes `IndexHeader::decode` (our cached header encoding): it must never panic,
//! and whatever it accepts must survive an encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb::index::IndexHeader;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = IndexHeader::decode(data) else {
        return;
    };
    let again = IndexHeader::decode(&h.encode()).expect("a re-encoded header decodes");
    assert_eq!(again, h);
    for name in h.label_names() {
        for value in h.label_values(name) {
            assert!(h.postings_range(name, value).is_some());
        }
    }
    let _ = h.all_postings_range();
    let _ = h.series_section();
});
