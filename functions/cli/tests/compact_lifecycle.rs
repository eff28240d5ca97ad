//! `aether tools bucket lifecycle` against a real S3 server (SeaweedFS): the
//! printed configuration, refusals, and `--apply` (PUT, then read back with a GET
//! through aws-sdk-s3), keeping rules that are not ours.
//!
//! SeaweedFS supports lifecycle rules with AbortIncompleteMultipartUpload and
//! Expiration, and answers NotImplemented to Transition rules: the transition
//! case is checked for its clear error (the configuration on the bucket is left
//! as it was).

use std::process::{Command, Output};

use harness::S3Server;
use tools::bucket_lifecycle::aws_sdk_s3::types::BucketLifecycleConfiguration;
use tools::bucket_lifecycle::aws_sdk_s3::types::{
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
};

fn lifecycle(cfg: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["tools", "bucket", "lifecycle"])
        .arg(format!("--objstore.config-file={}", cfg.display()))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// (id, abort days, expiration days) of the bucket's rules, sorted.
async fn rules(cfg: &bucket::ObjstoreConfig) -> Vec<(String, Option<i32>, Option<i32>)> {
    let s3 = tools::bucket_lifecycle::s3_config(cfg).unwrap();
    let client = tools::bucket_lifecycle::client(s3).await;
    let mut v: Vec<_> = tools::bucket_lifecycle::current_rules(&client, &s3.bucket)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.id().unwrap_or_default().to_string(),
                r.abort_incomplete_multipart_upload()
                    .and_then(|a| a.days_after_initiation()),
                r.expiration().and_then(|e| e.days()),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_refuses_and_applies_lifecycle_rules() {
    let s3 = S3Server::start("lifecycle-test").expect("start SeaweedFS");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("objstore.yml");
    std::fs::write(&file, s3.objstore_yaml()).unwrap();
    let cfg = bucket::ObjstoreConfig::parse(&s3.objstore_yaml()).unwrap();
    // weed mini answers before its -bucket exists: wait until a PUT works.
    let store = cfg.build().unwrap();
    let t0 = std::time::Instant::now();
    loop {
        use bucket::object_store::ObjectStoreExt;
        let key = bucket::object_store::path::Path::from("ready");
        match store
            .put(&key, bucket::object_store::PutPayload::from_static(b"1"))
            .await
        {
            Ok(_) => break,
            Err(e) if t0.elapsed() < std::time::Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("bucket never became usable: {e}"),
        }
    }

    // Print mode: only the abort rule, never an expiration.
    let o = lifecycle(&file, &["--retention.resolution-raw=30d"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rs = v["Rules"].as_array().unwrap();
    assert_eq!(rs.len(), 1, "{v}");
    assert_eq!(
        rs[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"],
        7
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("Expiration"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No expiration rule"));
    let o = lifecycle(&file, &["-o", "xml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("<LifecycleConfiguration"));

    // Refusals: an archive class; a bad output format. Nothing is applied.
    let o = lifecycle(
        &file,
        &[
            "--transition-after=90d",
            "--transition-storage-class=GLACIER",
            "--apply",
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("restored"),
        "{}",
        text(&o)
    );
    let o = lifecycle(&file, &["-o", "yaml"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("json or xml"));
    assert!(rules(&cfg).await.is_empty());

    // A rule of someone else's is on the bucket already.
    let s3cfg = tools::bucket_lifecycle::s3_config(&cfg).unwrap();
    let client = tools::bucket_lifecycle::client(s3cfg).await;
    let foreign = LifecycleRule::builder()
        .id("scratch-cleanup")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("scratch/").build())
        .expiration(LifecycleExpiration::builder().days(3).build())
        .build()
        .unwrap();
    client
        .put_bucket_lifecycle_configuration()
        .bucket(&s3cfg.bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(foreign)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // --apply adds ours and keeps theirs; applying again replaces ours.
    let o = lifecycle(&file, &["--apply", "--abort-incomplete-uploads=3d"]);
    assert!(o.status.success(), "{}", text(&o));
    let ours = "aether-abort-incomplete-multipart-uploads".to_string();
    assert_eq!(
        rules(&cfg).await,
        vec![
            (ours.clone(), Some(3), None),
            ("scratch-cleanup".into(), None, Some(3))
        ]
    );
    let o = lifecycle(&file, &["--apply", "--abort-incomplete-uploads=36h"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        rules(&cfg).await,
        vec![
            (ours.clone(), Some(2), None),
            ("scratch-cleanup".into(), None, Some(3))
        ]
    );

    // SeaweedFS has no storage classes: a transition is refused with a clear
    // message, and the bucket keeps its configuration.
    let o = lifecycle(
        &file,
        &[
            "--apply",
            "--transition-after=60d",
            "--transition-storage-class=STANDARD_IA",
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("PutBucketLifecycleConfiguration") && err.contains("NotImplemented"),
        "{}",
        text(&o)
    );
    assert_eq!(rules(&cfg).await.len(), 2);
}
