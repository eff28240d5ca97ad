//! `aether tools bucket inspect|mark|verify|web|retention` against a FILESYSTEM
//! bucket holding blocks written by the block writer and uploaded as Thanos does.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use bucket::ObjstoreConfig;
use tools::bucket_tools::{self as bt, MarkOutcome};
use tools::bucket_verify::{self as bv, Issue};
use tsdb::block::BlockWriter;
use tsdb::meta::{BlockMeta, ThanosMeta};
use ulid::Ulid;

const T0: i64 = 1_680_307_200_000; // 2023-04-01T00:00:00Z
const H: i64 = 3_600_000;

struct Bucket {
    _tmp: tempfile::TempDir,
    local: std::path::PathBuf,
    dir: std::path::PathBuf,
    cfg: ObjstoreConfig,
}

fn bucket() -> Bucket {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bucket");
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&local).unwrap();
    let cfg = ObjstoreConfig::filesystem(&dir);
    Bucket {
        _tmp: tmp,
        local,
        dir,
        cfg,
    }
}

/// Writes a block of `series` series with a sample a minute over [min, max),
/// sets its level and resolution, and uploads it with external labels `ext`.
async fn put_block(
    b: &Bucket,
    ext: &[(&str, &str)],
    min: i64,
    max: i64,
    series: usize,
    level: u32,
    resolution: i64,
) -> BlockMeta {
    let mut w = BlockWriter::create(&b.local).unwrap();
    for i in 0..series {
        let labels = model::Labels::from_pairs([
            ("__name__", "up".to_string()),
            ("instance", format!("i{i:03}")),
        ]);
        w.add_series(&labels, (min..max).step_by(60_000).map(|t| (t, 1.0)))
            .unwrap();
    }
    let labels: BTreeMap<String, String> = ext
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut meta = w.finish(Some(ThanosMeta::new("sidecar", labels))).unwrap();
    meta.compaction.level = level;
    meta.thanos.as_mut().unwrap().downsample.resolution = resolution;
    let dir = b.local.join(meta.ulid.to_string());
    meta.write_dir(&dir).unwrap();
    let store = b.cfg.build().unwrap();
    bucket::upload_block_with(store.as_ref(), &dir, Some(&meta), &b.cfg.upload_options())
        .await
        .unwrap();
    meta
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[tokio::test]
async fn inspect_prints_a_row_per_block_sorted_by_labels_then_time() {
    let b = bucket();
    let late = put_block(&b, &[("cluster", "b")], T0 + 2 * H, T0 + 4 * H, 3, 1, 0).await;
    let early = put_block(&b, &[("cluster", "b")], T0, T0 + 2 * H, 2, 1, 0).await;
    let other = put_block(&b, &[("cluster", "a")], T0, T0 + 8 * H, 4, 3, 300_000).await;

    let store = b.cfg.build().unwrap();
    let mut metas = bucket::list_block_metas(store.as_ref())
        .await
        .unwrap()
        .metas;
    let mut out = Vec::new();
    tools::bucket_inspect::write_inspect(
        &mut metas,
        tools::bucket_inspect::InspectFormat::Table,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 + 3, "{text}");
    for col in [
        "ULID",
        "FROM",
        "UNTIL",
        "RANGE",
        "#SERIES",
        "#SAMPLES",
        "#CHUNKS",
        "COMP-LEVEL",
        "RESOLUTION",
        "SOURCE",
        "LABELS",
    ] {
        assert!(lines[0].contains(col), "{}", lines[0]);
    }
    let cells = |l: &str| -> Vec<String> {
        l.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    // cluster=a first, then cluster=b by minTime.
    let order: Vec<String> = lines[2..].iter().map(|l| cells(l)[0].clone()).collect();
    assert_eq!(
        order,
        [other.ulid, early.ulid, late.ulid].map(|u| u.to_string())
    );
    let row = cells(lines[2]);
    assert_eq!(row[1], "2023-04-01T00:00:00Z");
    assert_eq!(row[2], tools::bucket_inspect::rfc3339(other.max_time));
    assert_eq!(row[4], "4");
    assert_eq!(row[5], other.stats.num_samples.to_string());
    assert_eq!(row[6], other.stats.num_chunks.to_string());
    assert_eq!(row[7], "3");
    assert_eq!(row[8], "5m0s");
    assert_eq!(row[9], "sidecar");
    assert_eq!(row[10], "cluster=a");
    let row = cells(lines[3]);
    assert_eq!(row[1], "2023-04-01T00:00:00Z");
    assert_eq!(row[4], "2");
    assert_eq!(row[5], (2 * 120).to_string());
    assert_eq!(row[8], "0s");

    // JSON: the same blocks, same order, with the raw numbers.
    let mut out = Vec::new();
    tools::bucket_inspect::write_inspect(
        &mut metas,
        tools::bucket_inspect::InspectFormat::Json,
        &mut out,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["ulid"], other.ulid.to_string());
    assert_eq!(arr[0]["numSeries"], 4);
    assert_eq!(arr[0]["compactionLevel"], 3);
    assert_eq!(arr[0]["resolution"], 300_000);
    assert_eq!(arr[0]["labels"]["cluster"], "a");
    assert_eq!(arr[1]["minTime"], T0);
    assert_eq!(arr[1]["from"], "2023-04-01T00:00:00Z");
    assert_eq!(arr[2]["numSamples"], late.stats.num_samples);

    // The whole command runs against the config too.
    let mut out = Vec::new();
    tools::bucket_inspect::inspect(&b.cfg, tools::bucket_inspect::InspectFormat::Tsv, &mut out)
        .await
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 4);
}

#[tokio::test]
async fn mark_adds_and_removes_thanos_markers() {
    let b = bucket();
    let m = put_block(&b, &[("cluster", "a")], T0, T0 + 2 * H, 1, 1, 0).await;
    let id = m.ulid;
    let block_dir = b.dir.join(id.to_string());

    let got = bt::mark(
        &b.cfg,
        &[id],
        "deletion-mark.json",
        "bad data",
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(got, [MarkOutcome::Added]);
    let v = read_json(&block_dir.join("deletion-mark.json"));
    let keys: HashSet<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        HashSet::from(["id", "version", "details", "deletion_time"])
    );
    assert_eq!(v["id"], id.to_string());
    assert_eq!(v["version"], 1);
    assert_eq!(v["details"], "bad data");
    assert!(v["deletion_time"].as_i64().unwrap() > 1_600_000_000);

    let got = bt::mark(
        &b.cfg,
        &[id],
        "deletion-mark.json",
        "again",
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(got, [MarkOutcome::AlreadyMarked]);

    bt::mark(
        &b.cfg,
        &[id],
        "no-compact-mark.json",
        "too big",
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    let v = read_json(&block_dir.join("no-compact-mark.json"));
    let keys: HashSet<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        HashSet::from(["id", "version", "details", "no_compact_time", "reason"])
    );
    assert_eq!(v["reason"], "manual");
    assert_eq!(v["details"], "too big");

    let got = bt::mark(&b.cfg, &[id], "deletion-mark.json", "", true, Vec::new())
        .await
        .unwrap();
    assert_eq!(got, [MarkOutcome::Removed]);
    assert!(!block_dir.join("deletion-mark.json").exists());
    assert!(block_dir.join("no-compact-mark.json").exists());
    bt::mark(&b.cfg, &[id], "no-compact-mark.json", "", true, Vec::new())
        .await
        .unwrap();
    assert!(!block_dir.join("no-compact-mark.json").exists());
    assert!(block_dir.join("meta.json").exists());

    // Misuse: unknown marker, no details, missing block.
    assert!(bt::mark(&b.cfg, &[id], "foo.json", "x", false, Vec::new())
        .await
        .is_err());
    assert!(
        bt::mark(&b.cfg, &[id], "deletion-mark.json", "", false, Vec::new())
            .await
            .is_err()
    );
    assert!(bt::mark(
        &b.cfg,
        &[Ulid::new()],
        "deletion-mark.json",
        "x",
        false,
        Vec::new()
    )
    .await
    .is_err());
}

#[tokio::test]
async fn verify_finds_overlaps_partial_blocks_and_bad_metas() {
    let b = bucket();
    let a1 = put_block(&b, &[("cluster", "a")], T0, T0 + 2 * H, 2, 1, 0).await;
    let a2 = put_block(&b, &[("cluster", "a")], T0 + H, T0 + 3 * H, 2, 1, 0).await;
    // Adjacent, other stream, other resolution: no overlap.
    put_block(&b, &[("cluster", "a")], T0 + 3 * H, T0 + 5 * H, 2, 1, 0).await;
    put_block(&b, &[("cluster", "b")], T0, T0 + 2 * H, 2, 1, 0).await;
    put_block(&b, &[("cluster", "a")], T0, T0 + 8 * H, 2, 2, 300_000).await;
    // An overlap whose source is marked for deletion is a compaction in progress.
    let c1 = put_block(&b, &[("cluster", "c")], T0, T0 + 2 * H, 2, 1, 0).await;
    put_block(&b, &[("cluster", "c")], T0, T0 + 4 * H, 2, 2, 0).await;
    bt::mark(
        &b.cfg,
        &[c1.ulid],
        "deletion-mark.json",
        "compacted",
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    // A partial upload and a meta.json that doesn't parse.
    let partial = Ulid::new();
    std::fs::create_dir_all(b.dir.join(partial.to_string()).join("chunks")).unwrap();
    std::fs::write(b.dir.join(partial.to_string()).join("chunks/000001"), b"x").unwrap();
    let broken = Ulid::new();
    std::fs::create_dir_all(b.dir.join(broken.to_string())).unwrap();
    std::fs::write(
        b.dir.join(broken.to_string()).join("meta.json"),
        b"{not json",
    )
    .unwrap();

    let r = bv::verify(&b.cfg, &Issue::DEFAULT).await.unwrap();
    assert_eq!(r.overlaps.len(), 1, "{r:?}");
    let ids: Vec<Ulid> = r.overlaps[0].blocks.iter().map(|b| b.0).collect();
    assert_eq!(ids, [a1.ulid, a2.ulid]);
    assert_eq!(r.overlaps[0].resolution, 0);
    assert_eq!(r.partial, [partial]);
    assert_eq!(r.bad_meta.len(), 1);
    assert_eq!(r.bad_meta[0].0, broken);
    assert!(r.index.is_empty());
    assert_eq!(r.issue_count(), 3);
    let mut out = Vec::new();
    r.write(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!(
            "overlap: labels={{cluster=a}} resolution=0s: {}",
            a1.ulid
        )),
        "{text}"
    );
    assert!(text.contains(&format!("partial: {partial}")), "{text}");

    // The index check reads every block and finds the writer's blocks sound.
    let r = bv::verify(&b.cfg, &[Issue::Index]).await.unwrap();
    assert!(r.index.is_empty(), "{:?}", r.index);
    assert!(r.overlaps.is_empty() && r.partial.is_empty());

    // A block whose meta claims a shorter range and fewer series than its index holds.
    let mut lying = put_block(&b, &[("cluster", "d")], T0, T0 + 2 * H, 3, 1, 0).await;
    lying.max_time = T0 + H;
    lying.stats.num_series = 2;
    let problems = bv::check_block_index(b.cfg.build().unwrap(), &lying)
        .await
        .unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("outside the block's range")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("index holds 3 series, meta.json says 2")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn web_page_draws_a_rect_per_block() {
    let b = bucket();
    let mut ids = Vec::new();
    for (ext, min, max, level, res) in [
        ("a", T0, T0 + 2 * H, 1, 0),
        ("a", T0 + 2 * H, T0 + 4 * H, 1, 0),
        ("a", T0, T0 + 8 * H, 2, 0),
        ("a", T0, T0 + 8 * H, 2, 300_000),
        ("b<&>", T0, T0 + 2 * H, 1, 0),
    ] {
        ids.push(
            put_block(&b, &[("cluster", ext)], min, max, 1, level, res)
                .await
                .ulid,
        );
    }
    bt::mark(
        &b.cfg,
        &ids[..1],
        "deletion-mark.json",
        "compacted",
        false,
        Vec::new(),
    )
    .await
    .unwrap();

    let store = b.cfg.build().unwrap();
    let (metas, marks, partial) = tools::bucket_web::load(store.as_ref()).await.unwrap();
    let html = tools::bucket_web::render_page(&metas, &marks, &partial);
    assert_eq!(html.matches("<rect class=\"block").count(), 5, "{html}");
    assert_eq!(html.matches("<rect class=\"block deleted\"").count(), 1);
    assert_eq!(html.matches("<g class=\"row\">").count(), 3);
    for id in &ids {
        assert!(html.contains(&format!("data-ulid=\"{id}\"")));
    }
    assert!(html.contains("cluster=b&lt;&amp;&gt;"));
    // Self-contained: nothing loaded from elsewhere.
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("https://"));

    // Served over HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = b.cfg.clone();
    let server = tokio::spawn(async move { tools::bucket_web::serve(&cfg, listener).await });
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("text/html"));
    assert_eq!(resp.matches("<rect class=\"block").count(), 5);
    server.abort();
}

#[tokio::test]
async fn retention_marks_blocks_past_their_resolutions_retention() {
    let b = bucket();
    let old_raw = put_block(&b, &[("cluster", "a")], T0, T0 + 2 * H, 1, 1, 0).await;
    let new_raw = put_block(&b, &[("cluster", "a")], T0 + 48 * H, T0 + 50 * H, 1, 1, 0).await;
    let old_5m = put_block(&b, &[("cluster", "a")], T0, T0 + 8 * H, 1, 2, 300_000).await;
    let now = T0 + 51 * H;
    let ret = bt::Retention {
        raw: 24 * H,
        res_5m: 0,
        res_1h: 0,
    };
    let marked = bt::apply_retention(&b.cfg, ret, now, Vec::new())
        .await
        .unwrap();
    assert_eq!(marked, [old_raw.ulid]);
    assert!(b
        .dir
        .join(old_raw.ulid.to_string())
        .join("deletion-mark.json")
        .exists());
    assert!(!b
        .dir
        .join(new_raw.ulid.to_string())
        .join("deletion-mark.json")
        .exists());
    assert!(!b
        .dir
        .join(old_5m.ulid.to_string())
        .join("deletion-mark.json")
        .exists());
    // Again: nothing new to mark.
    let marked = bt::apply_retention(&b.cfg, ret, now, Vec::new())
        .await
        .unwrap();
    assert!(marked.is_empty());
}

#[derive(clap::Parser, Debug)]
struct TestCli {
    #[command(flatten)]
    tools: tools::cli::ToolsArgs,
}

#[test]
fn bucket_flags_parse_as_thanos_spells_them() {
    use clap::{CommandFactory, Parser};
    use tools::cli::{BucketCommand, ToolsCommand};
    TestCli::command().debug_assert();
    let parse = |args: &[&str]| {
        let mut v = vec!["aether", "bucket"];
        v.extend_from_slice(args);
        match TestCli::try_parse_from(v).unwrap().tools.command {
            ToolsCommand::Bucket { command } => command,
            c => panic!("{c:?}"),
        }
    };
    let id = "01GZ6X0Q3N0000000000000000";
    match parse(&[
        "mark",
        "--objstore.config-file",
        "b.yml",
        "--id",
        id,
        "--id",
        id,
        "--marker",
        "no-compact-mark.json",
        "--details",
        "why",
        "--remove",
    ]) {
        BucketCommand::Mark {
            ids,
            marker,
            details,
            remove,
            objstore,
        } => {
            assert_eq!(ids.len(), 2);
            assert_eq!(marker, "no-compact-mark.json");
            assert_eq!(details, "why");
            assert!(remove);
            assert_eq!(objstore.file.as_deref(), Some("b.yml"));
        }
        c => panic!("{c:?}"),
    }
    match parse(&[
        "verify",
        "--objstore.config-file",
        "b.yml",
        "--issues",
        "overlaps,index",
    ]) {
        BucketCommand::Verify { issues, .. } => assert_eq!(issues, ["overlaps", "index"]),
        c => panic!("{c:?}"),
    }
    match parse(&["inspect", "--objstore.config-file", "b.yml", "-o", "json"]) {
        BucketCommand::Inspect { output, .. } => assert_eq!(output, "json"),
        c => panic!("{c:?}"),
    }
    match parse(&[
        "web",
        "--objstore.config-file",
        "b.yml",
        "--http-address",
        "127.0.0.1:1",
    ]) {
        BucketCommand::Web { http_address, .. } => assert_eq!(http_address, "127.0.0.1:1"),
        c => panic!("{c:?}"),
    }
    match parse(&[
        "retention",
        "--objstore.config-file",
        "b.yml",
        "--retention.resolution-raw",
        "30d",
    ]) {
        BucketCommand::Retention {
            retention: tools::cli::RetentionArgs { raw, res_5m, .. },
            ..
        } => {
            assert_eq!(raw, "30d");
            assert_eq!(res_5m, "0d");
        }
        c => panic!("{c:?}"),
    }
}
