//! The ruler's head passes the StoreAPI conformance suite every store runs.

use model::Labels;
use rule::Head;
use storeapi::conformance::{dataset, Suite};

#[tokio::test]
async fn head_passes_the_storeapi_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let ext = Labels::from_pairs([("replica", "r0"), ("rule", "x")]);
    let head = Head::open(dir.path(), ext.clone(), 1 << 50, 1 << 50).unwrap();
    let mut batch = Vec::new();
    for (l, samples) in dataset() {
        for (t, v) in samples {
            batch.push((l.clone(), t, v));
        }
    }
    let stats = head.append(&batch).unwrap();
    assert_eq!(stats.out_of_order, 0);
    if let Err(f) = Suite::new(ext).run(&head).await {
        panic!("{f}");
    }
}
