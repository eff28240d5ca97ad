//! Tombstones files from arbitrary bytes: decoding may fail but must not panic.
//! Decoded tombstones whose intervals are well-formed (mint <= maxt) must survive
//! an encode/decode round trip unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb::tombstones::{encode, read};

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = read(data) {
        let well_formed = t
            .iter()
            .all(|(_, ivs)| ivs.iter().all(|iv| iv.mint <= iv.maxt));
        let again = read(&encode(&t)).expect("re-encoded tombstones decode");
        if well_formed {
            assert_eq!(again, t);
        }
    }
});
