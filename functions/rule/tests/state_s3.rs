//! The ruler state's conditional writes on a real S3 server (SeaweedFS): of two
//! writers that read the same version, exactly one wins; a fresh state can be
//! created only once.

use std::sync::Arc;

use model::Labels;
use rule::ruler::{BucketStateStore, GroupState, RulerState, StateStore};

#[tokio::test]
async fn conditional_state_writes_on_seaweedfs() {
    let s3 = harness::S3Server::start("rule-state").unwrap();
    let store = bucket::ObjstoreConfig::parse(&s3.objstore_yaml())
        .unwrap()
        .build()
        .unwrap();
    let labels = Labels::from_pairs([("replica", "r0")]);
    let a = BucketStateStore::new(Arc::clone(&store), &labels);
    let b = BucketStateStore::new(Arc::clone(&store), &labels);

    let (empty, v0) = a.load().await.unwrap();
    assert!(empty.groups.is_empty() && v0.is_none());
    let mut s1 = RulerState {
        version: 1,
        ..Default::default()
    };
    s1.groups.insert(
        "f;g".into(),
        GroupState {
            last_eval: 10_000,
            ..Default::default()
        },
    );
    // Both saw "no state": only the first create wins.
    assert!(a.save(&s1, None).await.unwrap());
    assert!(!b.save(&s1, None).await.unwrap());

    // Both read version 1; both try to write on top of it: one wins.
    let (got, va) = a.load().await.unwrap();
    let (_, vb) = b.load().await.unwrap();
    assert_eq!(got, s1);
    let mut s2 = s1.clone();
    s2.groups.get_mut("f;g").unwrap().last_eval = 20_000;
    assert!(a.save(&s2, va).await.unwrap());
    assert!(
        !b.save(&s2, vb).await.unwrap(),
        "a stale version must not overwrite"
    );
    assert_eq!(b.load().await.unwrap().0.groups["f;g"].last_eval, 20_000);
    // Another ruler (other labels) has its own object.
    let other = BucketStateStore::new(store, &Labels::from_pairs([("replica", "r1")]));
    assert!(other.load().await.unwrap().1.is_none());
    assert_ne!(
        rule::ruler::state_key(&labels),
        rule::ruler::state_key(&Labels::from_pairs([("replica", "r1")]))
    );
}
