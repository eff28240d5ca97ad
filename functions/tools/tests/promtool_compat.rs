//! The block format against the real thing: Prometheus 2.42's promtool and server.
//! Blocks written by promtool or Prometheus dump identically through `aether` and
//! promtool; blocks written by aether are read by promtool and by a Prometheus server.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tools::demo::{self, DemoSpec};

const HOUR: i64 = 3_600_000;

async fn aether_dump_range(dir: &Path, mint: i64, maxt: i64) -> String {
    let mut out = Vec::new();
    tools::dump::dump(dir, mint, maxt, &[], &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn aether_dump(dir: &Path) -> String {
    aether_dump_range(dir, i64::MIN, i64::MAX).await
}

async fn aether_analyze(dir: &Path) -> String {
    let mut out = Vec::new();
    tools::analyze::analyze(dir, 20, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

fn spec(hours: i64, instances: usize) -> DemoSpec {
    // 2023-04-01T00:00:00Z: an aligned start, with data crossing block boundaries.
    let start = 1_680_307_200_000 + 17 * 60_000;
    DemoSpec {
        start,
        end: start + hours * HOUR,
        interval: 15_000,
        instances,
    }
}

fn write_openmetrics(spec: &DemoSpec, path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    demo::write_openmetrics(spec, std::io::BufWriter::new(f)).unwrap();
}

fn block_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_blocks_dump_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let om = tmp.path().join("in.om");
    write_openmetrics(&spec(5, 2), &om);
    let data = tmp.path().join("data");
    harness::promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        data.to_str().unwrap(),
    ])
    .unwrap();
    assert!(
        block_dirs(&data).len() >= 3,
        "5h of data spans 3+ 2h blocks"
    );
    let theirs = harness::promtool_dump(&data, &[]).unwrap();
    let ours = aether_dump(&data).await;
    assert!(
        theirs.lines().count() > 10_000,
        "dump has {} lines",
        theirs.lines().count()
    );
    assert_eq!(ours, theirs);

    // One block on its own, and a time range.
    let one = &block_dirs(&data)[1];
    let single = tmp.path().join("single");
    harness::copy_dir(one, &single.join(one.file_name().unwrap())).unwrap();
    assert_eq!(
        aether_dump(&single).await,
        harness::promtool_dump(&single, &[]).unwrap()
    );
    let (mint, maxt) = ("1680310000000", "1680315000000");
    let ours = aether_dump_range(&data, mint.parse().unwrap(), maxt.parse().unwrap()).await;
    let theirs = harness::promtool_dump(&data, &["--min-time", mint, "--max-time", maxt]).unwrap();
    assert_eq!(ours, theirs);
}

#[tokio::test(flavor = "multi_thread")]
async fn our_blocks_are_read_by_promtool_and_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    let om = tmp.path().join("in.om");
    let sp = spec(5, 2);
    write_openmetrics(&sp, &om);
    let data = tmp.path().join("data");
    tools::backfill::from_openmetrics_file(&om, &data, 2 * HOUR).unwrap();
    let blocks = block_dirs(&data);
    assert_eq!(blocks.len(), 3);

    // promtool reads every sample back, identical to ours and to the input.
    let theirs = harness::promtool_dump(&data, &[]).unwrap();
    let ours = aether_dump(&data).await;
    assert_eq!(ours, theirs);
    let expected: usize = demo::series(&sp)
        .iter()
        .map(|s| s.samples(&sp, sp.start, sp.end).len())
        .sum();
    assert_eq!(theirs.lines().count(), expected);

    // promtool analyze reads each block without error.
    for b in &blocks {
        let copy = tempfile::tempdir().unwrap();
        harness::copy_dir(b, &copy.path().join(b.file_name().unwrap())).unwrap();
        let out = harness::promtool(&[
            "tsdb",
            "analyze",
            copy.path().to_str().unwrap(),
            b.file_name().unwrap().to_str().unwrap(),
        ])
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Block ID"), "{text}");
        // `aether tools tsdb analyze` agrees on the series count.
        let ours = aether_analyze(b).await;
        let count = |s: &str, key: &str| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.rsplit(' ').next().map(str::to_string))
        };
        for key in [
            "Series:",
            "Label names:",
            "Postings (unique label pairs):",
            "Postings entries (total label pairs):",
            "Duration:",
            "Block ID:",
        ] {
            assert!(count(&text, key).is_some(), "promtool printed no {key}");
            assert_eq!(count(&ours, key), count(&text, key), "{key}");
        }
    }

    // A Prometheus server on a data dir of our blocks answers with the same values.
    let prom_data = tmp.path().join("prom");
    harness::copy_dir(&data, &prom_data).unwrap();
    let p =
        harness::Prometheus::start("global:\n  scrape_interval: 1m\n", &prom_data, &[]).unwrap();
    let at = (sp.start + 3 * HOUR) / 1000;
    let body = p
        .get(&format!("/api/v1/query?query=count(up)&time={at}"))
        .unwrap();
    assert!(body.contains(&format!("\"{}\"", sp.instances)), "{body}");
    // Every series' last value before `at` equals the demo generator's.
    let body = p
        .get(&format!(
            "/api/v1/query?query=node_memory_available_bytes&time={at}"
        ))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    for s in demo::series(&sp)
        .iter()
        .filter(|s| s.labels.metric_name() == Some("node_memory_available_bytes"))
    {
        let samples = s.samples(&sp, sp.start, sp.end);
        let (_, want) = samples
            .iter()
            .copied()
            .rfind(|(t, _)| *t <= at * 1000)
            .unwrap();
        let inst = s.labels.get("instance").unwrap();
        let got = result
            .iter()
            .find(|r| r["metric"]["instance"] == inst)
            .map(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            .expect("series present");
        assert_eq!(got, want, "instance {inst}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn blocks_cut_by_a_running_prometheus_dump_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = "global:\n  scrape_interval: 1s\n  external_labels: {replica: a}\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['PLACEHOLDER']\n";
    // Prometheus scrapes itself; its port is only known after start, so write the
    // config with the port we will give it.
    let port = harness::free_port();
    let cfg = cfg.replace("PLACEHOLDER", &format!("127.0.0.1:{port}"));
    let cfg_path = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut proc = harness::Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--web.enable-admin-api")
            .arg("--storage.tsdb.min-block-duration=1m")
            .arg("--storage.tsdb.max-block-duration=1m"),
        tmp.path().join("prometheus.log"),
    )
    .unwrap();
    let start = Instant::now();
    while block_dirs(&data).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no blocks after 300s; log:\n{}",
            proc.log()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    // Delete part of one series through the admin API: Prometheus writes tombstones
    // into the persisted blocks, and both dumps must leave those samples out.
    let first = block_dirs(&data)[0].clone();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("meta.json")).unwrap()).unwrap();
    let (lo, hi) = (
        meta["minTime"].as_i64().unwrap(),
        meta["maxTime"].as_i64().unwrap(),
    );
    let mid = lo + (hi - lo) / 2;
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/admin/tsdb/delete_series?match[]=up&start={}&end={}",
        lo as f64 / 1000.0,
        mid as f64 / 1000.0
    );
    let st = Command::new("curl")
        .args(["-sf", "-X", "POST", "-g", &url])
        .status()
        .unwrap();
    assert!(st.success(), "delete_series failed");
    proc.stop(Duration::from_secs(10));
    let tomb = std::fs::metadata(first.join("tombstones")).unwrap().len();
    assert!(tomb > 9, "Prometheus wrote no tombstones ({tomb} bytes)");
    let only_blocks = tmp.path().join("blocks");
    for b in block_dirs(&data) {
        harness::copy_dir(&b, &only_blocks.join(b.file_name().unwrap())).unwrap();
    }
    let theirs = harness::promtool_dump(&only_blocks, &[]).unwrap();
    assert!(theirs.lines().count() > 100, "{theirs}");
    let up_in_deleted_range = theirs
        .lines()
        .filter(|l| l.starts_with("{__name__=\"up\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .filter(|t| *t >= lo && *t <= mid)
        .count();
    assert_eq!(
        up_in_deleted_range, 0,
        "deleted samples still dumped by promtool"
    );
    assert_eq!(aether_dump(&only_blocks).await, theirs);
}
