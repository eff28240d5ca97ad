//! A store-read Lambda invocation payload (JSON carrying base64 protobuf), answered
//! by an in-memory store through `storeapi::lambda::handle`. Half the inputs are
//! raw payload bytes; the other half are well-formed JSON around an arbitrary
//! protobuf request, so the decoding behind the JSON is reached too. `handle`
//! never fails: errors travel in the answer; it must not panic.

#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use model::Labels;
use storeapi::MemStore;

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
});

static STORE: LazyLock<MemStore> = LazyLock::new(|| {
    let labels = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
    let samples: Vec<(i64, f64)> = (0..500).map(|t| (t * 15_000, t as f64)).collect();
    MemStore::with_data(Labels::from_pairs([("replica", "a")]), &[(labels, samples)])
});

const METHODS: [&str; 4] = ["info", "series", "label_names", "label_values"];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let payload = if which & 0x80 == 0 {
        rest.to_vec()
    } else {
        // Split the rest into the request and, optionally, the `after` labels.
        let cut = usize::from(which & 0x3f).min(rest.len());
        let (after, request) = rest.split_at(cut);
        let method = METHODS[usize::from(which >> 5) & 3];
        let after = if after.is_empty() {
            String::new()
        } else {
            format!(",\"after\":\"{}\"", B64.encode(after))
        };
        format!(
            "{{\"method\":\"{method}\",\"request\":\"{}\"{after}}}",
            B64.encode(request)
        )
        .into_bytes()
    };
    let _ = RT.block_on(storeapi::lambda::handle(&*STORE, &payload));
});
