//! Blocks read where they lie, in a real S3 server: the block reader fetches byte
//! ranges, so a selective read costs a few small GETs, and a full read equals what
//! promtool dumps from the local copy.

use std::sync::Arc;

use bucket::{CountingStore, ObjstoreConfig};
use tools::demo::{self, DemoSpec};

#[tokio::test(flavor = "multi_thread")]
async fn blocks_in_s3_dump_like_promtool_with_few_gets() {
    let tmp = tempfile::tempdir().unwrap();
    let start = 1_680_307_200_000;
    let spec = DemoSpec {
        start,
        end: start + 2 * 3_600_000,
        interval: 15_000,
        instances: 20,
    };
    let om = tmp.path().join("in.om");
    demo::write_openmetrics(
        &spec,
        std::io::BufWriter::new(std::fs::File::create(&om).unwrap()),
    )
    .unwrap();
    let data = tmp.path().join("data");
    harness::promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        data.to_str().unwrap(),
    ])
    .unwrap();
    let block_dir = std::fs::read_dir(&data)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    let s3 = harness::S3Server::start("blocks").unwrap();
    let cfg = ObjstoreConfig::parse(&s3.objstore_yaml()).unwrap();
    let store = cfg.build().unwrap();
    let up = bucket::upload_block(store.as_ref(), &block_dir, None)
        .await
        .unwrap();
    let block_bytes = up.bytes;

    let (counted, stats) = CountingStore::wrap(store.clone());
    let meta = bucket::fetch_meta(counted.as_ref(), up.ulid)
        .await
        .unwrap()
        .unwrap();
    stats.reset();
    let block = bucket::open_block(Arc::clone(&counted), meta.clone(), None)
        .await
        .unwrap();
    let open = stats.snapshot();
    assert!(open.gets() <= 4, "opening the index header took {open:?}");

    // One series: a handful of ranged GETs, a small fraction of the block's bytes.
    stats.reset();
    stats.start_log();
    let sel = tools::dump::parse_selector(r#"up{instance="api-7:8080"}"#).unwrap();
    let mut out = Vec::new();
    tools::dump::dump_blocks(
        std::slice::from_ref(&block),
        i64::MIN,
        i64::MAX,
        &[sel],
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 480, "{text}");
    let one = stats.snapshot();
    assert!(
        one.gets() <= 3,
        "one series took {one:?}: {:?}",
        stats.take_log()
    );
    assert!(
        one.get_range_bytes * 20 < block_bytes,
        "read {} of {block_bytes} bytes for one series",
        one.get_range_bytes
    );

    // Everything: equal to promtool's dump of the local block.
    let mut out = Vec::new();
    tools::dump::dump_blocks(
        std::slice::from_ref(&block),
        i64::MIN,
        i64::MAX,
        &[vec![]],
        &mut out,
    )
    .await
    .unwrap();
    let theirs = harness::promtool_dump(&data, &[]).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), theirs);
}
