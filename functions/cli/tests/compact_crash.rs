//! Crash safety of `aether compact` (the real binary against a real S3 server,
//! SeaweedFS): a pass is stopped with `kill -9` at each phase — while merging,
//! while uploading the new block, after the upload before marking the sources,
//! while marking, while downsampling and uploading the downsampled block, while
//! marking by retention, in the middle of deleting a block, before writing the
//! bucket index — and then run again. Queries through the store (raw resolution)
//! must see every sample exactly once, both at the moment of the crash and after
//! the rerun, and the bucket must end as a clean pass leaves it.
//!
//! A phase is hit deterministically with the testing aid
//! `AETHER_COMPACT_TEST_PAUSE=<phase>` (see `compact::hooks`): the process stops
//! for good at that point and prints `AETHER_TEST_PAUSED phase=<phase>`; the test
//! then kills it with SIGKILL.
//!
//! Also: two passes at once on one bucket (the lease) do not corrupt it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bucket::object_store::ObjectStore;
use harness::{Proc, S3Server};
use model::{Labels, MatchType, Matcher};
use storeapi::pb;
use storeapi::StoreApi;
use tsdb::block::BlockWriter;
use tsdb::chunkenc::SampleValue;
use tsdb::meta::{BlockMeta, ThanosMeta, RES_5M};
use ulid::Ulid;

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;
const STEP: i64 = 30_000;

/// Series labels (with external labels, as the store returns them) -> samples.
type View = BTreeMap<String, Vec<(i64, f64)>>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One scenario: a prefix of the shared S3 bucket.
struct Scenario {
    store: Arc<dyn ObjectStore>,
    yaml: PathBuf,
    dir: PathBuf,
    /// What queries must return at raw resolution after a complete pass.
    want: View,
}

fn series_samples(i: usize, from: i64, to: i64) -> Vec<(i64, f64)> {
    // A counter with a daily wave in its rate and a reset every 20h.
    (from..to)
        .step_by(STEP as usize)
        .map(|t| {
            let since_reset = t.rem_euclid(20 * H) / STEP;
            let wave = 1.0 + ((t as f64) / DAY as f64 * std::f64::consts::TAU).sin() * 0.5;
            (t, (since_reset as f64 * wave * (i + 1) as f64).floor())
        })
        .collect()
}

fn series_labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "crash_requests_total"),
        ("instance", &*format!("host-{i}:9100")),
        ("job", "node"),
    ])
}

async fn put_block(
    store: &dyn ObjectStore,
    tmp: &Path,
    n_series: usize,
    min: i64,
    max: i64,
    cluster: &str,
) -> BlockMeta {
    let id = Ulid::new();
    let mut w = BlockWriter::create_with_ulid(tmp, id).unwrap();
    let mut all: Vec<(Labels, usize)> = (0..n_series).map(|i| (series_labels(i), i)).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (l, i) in all {
        w.add_series(&l, series_samples(i, min, max)).unwrap();
    }
    let ext = [("cluster".to_string(), cluster.to_string())].into();
    let mut meta = w.finish(Some(ThanosMeta::new("sidecar", ext))).unwrap();
    meta.min_time = min;
    meta.max_time = max;
    let up = bucket::upload_block(store, &tmp.join(id.to_string()), Some(&meta))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(tmp.join(id.to_string()));
    up.meta
}

/// Stream `a`: a raw block of 48h (downsampled to 5m by a pass) then five 2h
/// blocks (the first four compacted into one 8h block, the newest held back);
/// stream `b`: one 2h block 60 days old (expired by the 30d raw retention).
async fn setup(s3: &S3Server, prefix: &str, root: &Path) -> Scenario {
    let dir = root.join(prefix);
    std::fs::create_dir_all(dir.join("blocks")).unwrap();
    let yaml_text = format!("{}prefix: {prefix}\n", s3.objstore_yaml());
    let yaml = dir.join("objstore.yml");
    std::fs::write(&yaml, &yaml_text).unwrap();
    let store = bucket::ObjstoreConfig::parse(&yaml_text)
        .unwrap()
        .build()
        .unwrap();
    let now = now_ms();
    let b0 = (now - 5 * DAY).div_euclid(2 * DAY) * (2 * DAY);
    let blocks = dir.join("blocks");
    let n = 3;
    put_block(&*store, &blocks, n, b0, b0 + 2 * DAY, "a").await;
    for k in 0..5 {
        let from = b0 + 2 * DAY + k * 2 * H;
        put_block(&*store, &blocks, n, from, from + 2 * H, "a").await;
    }
    let old = (now - 60 * DAY).div_euclid(2 * H) * (2 * H);
    put_block(&*store, &blocks, 1, old, old + 2 * H, "b").await;
    let mut want = View::new();
    for i in 0..n {
        let mut l: Vec<(String, String)> = series_labels(i)
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        l.push(("cluster".into(), "a".into()));
        let l = Labels::from_pairs(l);
        want.insert(l.to_string(), series_samples(i, b0, b0 + 2 * DAY + 10 * H));
    }
    Scenario {
        store,
        yaml,
        dir,
        want,
    }
}

/// weed mini answers before its -bucket exists (more so on a loaded machine):
/// waits until a PUT works.
async fn wait_usable(s3: &S3Server) {
    use bucket::object_store::ObjectStoreExt;
    let store = bucket::ObjstoreConfig::parse(&s3.objstore_yaml())
        .unwrap()
        .build()
        .unwrap();
    let key = bucket::object_store::path::Path::from("ready-probe");
    let t0 = Instant::now();
    while let Err(e) = store
        .put(&key, bucket::object_store::PutPayload::from_static(b"1"))
        .await
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "bucket never became usable: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.delete(&key).await.unwrap();
}

/// Every series and sample the store serves at raw resolution, in the order
/// served (duplicates kept, so that they show).
async fn query_view(store: &Arc<dyn ObjectStore>) -> View {
    let cfg = store::StoreConfig {
        bucket_index_max_age: Duration::ZERO,
        sync_interval: Duration::ZERO,
        ..Default::default()
    };
    let bs = store::BucketStore::new(store.clone(), cfg);
    let req = pb::SeriesRequest {
        min_time: 0,
        max_time: i64::MAX,
        matchers: storeapi::convert::matchers_to_pb(&[Matcher::new(
            MatchType::Regex,
            "__name__",
            ".+",
        )
        .unwrap()]),
        ..Default::default()
    };
    let (series, warnings) = storeapi::collect_series(bs.series(req).await.unwrap())
        .await
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut out = View::new();
    for s in series {
        let l = storeapi::convert::series_labels(&s).to_string();
        let v = out.entry(l).or_default();
        for c in &s.chunks {
            let raw = c.raw.as_ref().expect("raw chunk at raw resolution");
            for smp in storeapi::chunk::iter_wire_chunk(raw).unwrap() {
                let (t, val) = smp.unwrap();
                let SampleValue::Float(f) = val else {
                    panic!("histogram sample")
                };
                v.push((t, f));
            }
        }
    }
    out
}

/// Compares a view with the expected one: every sample once.
fn diff(got: &View, want: &View, only_cluster_a: bool) -> Option<String> {
    let got: View = got
        .iter()
        .filter(|(k, _)| !only_cluster_a || k.contains("cluster=\"a\""))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if got.keys().collect::<Vec<_>>() != want.keys().collect::<Vec<_>>() {
        return Some(format!(
            "series differ: got {:?}, want {:?}",
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        ));
    }
    for (k, w) in want {
        let g = &got[k];
        if g != w {
            let dups = g.windows(2).filter(|p| p[1].0 <= p[0].0).count();
            return Some(format!(
                "{k}: {} samples served, {} expected ({dups} out of order or duplicated)",
                g.len(),
                w.len()
            ));
        }
    }
    None
}

fn compact_cmd(sc: &Scenario, data: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aether"));
    cmd.args([
        "compact",
        "--consistency-delay=0s",
        "--delete-delay=0s",
        "--retention.resolution-raw=30d",
    ])
    .arg(format!("--data-dir={}", sc.dir.join(data).display()))
    .arg(format!("--objstore.config-file={}", sc.yaml.display()))
    .env("RUST_LOG", "info");
    cmd
}

/// Starts a pass that pauses at `phase`; returns it once paused, or an error
/// (with its log) if it ended without reaching the phase.
fn start_paused(sc: &Scenario, data: &str, phase: &str) -> Result<Proc, String> {
    let log = sc.dir.join(format!("{data}-{phase}.log"));
    let mut cmd = compact_cmd(sc, data);
    cmd.env("AETHER_COMPACT_TEST_PAUSE", phase);
    let mut p = Proc::spawn("aether compact", &mut cmd, log).unwrap();
    let marker = format!("AETHER_TEST_PAUSED phase={phase}");
    let start = Instant::now();
    loop {
        if p.log().contains(&marker) {
            return Ok(p);
        }
        if p.exited() || start.elapsed() > Duration::from_secs(120) {
            let log = p.log();
            p.kill9();
            return Err(format!("phase {phase} never reached:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text without ANSI colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn run_to_end(sc: &Scenario, data: &str) -> Result<String, String> {
    let out = compact_cmd(sc, data).output().unwrap();
    let log = strip_ansi(
        &(String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)),
    );
    if out.status.success() {
        Ok(log)
    } else {
        Err(format!("rerun failed ({}):\n{log}", out.status))
    }
}

/// The bucket as a finished pass must leave it: stream a as one 48h raw block,
/// its 5m downsampling (exactly one), the 8h block and the newest 2h block;
/// stream b and every source deleted; no partial upload; no deletion mark; the
/// bucket index listing exactly these blocks.
async fn check_final_bucket(store: &Arc<dyn ObjectStore>) -> Result<(), String> {
    let listing = bucket::list_block_metas(&**store)
        .await
        .map_err(|e| e.to_string())?;
    let metas = listing.metas;
    let mut shape: Vec<(i64, i64, i64)> = metas
        .iter()
        .map(|m| {
            (
                m.resolution(),
                (m.max_time - m.min_time) / H,
                m.compaction.level as i64,
            )
        })
        .collect();
    shape.sort();
    let want = vec![(0, 2, 1), (0, 8, 2), (0, 48, 1), (RES_5M, 48, 1)];
    if shape != want {
        return Err(format!(
            "blocks (resolution, hours, level): got {shape:?}, want {want:?}"
        ));
    }
    if metas.iter().any(|m| {
        m.thanos
            .as_ref()
            .unwrap()
            .labels
            .get("cluster")
            .map(String::as_str)
            != Some("a")
    }) {
        return Err("a block of stream b survived retention".into());
    }
    let mut dirs = std::collections::BTreeSet::new();
    use futures::StreamExt as _;
    let mut list = store.list(None);
    while let Some(o) = list.next().await {
        let o = o.map_err(|e| e.to_string())?;
        let first = o.location.parts().next().unwrap().as_ref().to_string();
        if Ulid::from_string(&first).is_ok() {
            dirs.insert(first.clone());
            if o.location.as_ref().ends_with("deletion-mark.json") {
                return Err(format!("deletion mark left: {}", o.location));
            }
        }
    }
    let live: std::collections::BTreeSet<String> =
        metas.iter().map(|m| m.ulid.to_string()).collect();
    if dirs != live {
        return Err(format!(
            "partial or leftover block directories: {:?}",
            dirs.difference(&live).collect::<Vec<_>>()
        ));
    }
    let idx = bucket::bucket_index::load(&**store)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no bucket index")?
        .index;
    let in_idx: std::collections::BTreeSet<String> =
        idx.blocks.iter().map(|b| b.ulid.to_string()).collect();
    if in_idx != live {
        return Err(format!("bucket index {in_idx:?} != blocks {live:?}"));
    }
    Ok(())
}

/// What the bucket looks like: complete blocks, directories without meta.json,
/// deletion marks, 5m blocks, whether a bucket index exists.
#[derive(Debug, PartialEq)]
struct Shape {
    blocks: usize,
    partial: usize,
    marked: usize,
    blocks_5m: usize,
    /// The bucket index lists exactly the complete blocks.
    index_current: bool,
}

async fn shape(store: &Arc<dyn ObjectStore>) -> Shape {
    use futures::StreamExt as _;
    let mut dirs: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut list = store.list(None);
    while let Some(o) = list.next().await {
        let o = o.unwrap();
        let parts: Vec<String> = o.location.parts().map(|p| p.as_ref().to_string()).collect();
        if Ulid::from_string(&parts[0]).is_err() || parts.len() < 2 {
            continue;
        }
        let d = dirs.entry(parts[0].clone()).or_default();
        match parts[1].as_str() {
            "meta.json" => d.0 = true,
            "deletion-mark.json" => d.1 = true,
            _ => {}
        }
    }
    let metas = bucket::list_block_metas(&**store).await.unwrap().metas;
    Shape {
        blocks: dirs.values().filter(|d| d.0).count(),
        partial: dirs.values().filter(|d| !d.0).count(),
        marked: dirs.values().filter(|d| d.1).count(),
        blocks_5m: metas.iter().filter(|m| m.resolution() == RES_5M).count(),
        index_current: bucket::bucket_index::load(&**store)
            .await
            .unwrap()
            .is_some_and(|i| {
                let ids: std::collections::BTreeSet<Ulid> =
                    i.index.blocks.iter().map(|b| b.ulid).collect();
                ids == metas.iter().map(|m| m.ulid).collect()
            }),
    }
}

/// The bucket at the moment each phase is reached (7 blocks at the start: the
/// 48h block, five 2h blocks, the expired block of stream b; the bucket index
/// the store wrote for them).
fn shape_at(phase: compact::Phase) -> Shape {
    use compact::Phase::*;
    let s = |blocks, partial, marked, blocks_5m, index_current| Shape {
        blocks,
        partial,
        marked,
        blocks_5m,
        index_current,
    };
    match phase {
        // Nothing in the bucket yet.
        Merge => s(7, 0, 0, 0, true),
        // The new block's chunks only.
        Upload => s(7, 1, 0, 0, true),
        // The 8h block complete, its 4 sources unmarked.
        Uploaded => s(8, 0, 0, 0, false),
        MarkSources => s(8, 0, 1, 0, false),
        // Compaction done, the 5m block written locally only.
        Downsample => s(8, 0, 4, 0, false),
        DownsampleUpload => s(8, 1, 4, 0, false),
        // The expired block marked.
        Retention => s(9, 0, 5, 1, false),
        // One block half deleted: meta.json gone, the rest and its mark there.
        Delete => s(8, 1, 5, 1, false),
        // Everything deleted, the bucket index not yet updated.
        BucketIndex => s(4, 0, 0, 1, false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_phase_then_rerun_loses_and_duplicates_nothing() {
    let s3 = S3Server::start("compact-crash").expect("start SeaweedFS");
    wait_usable(&s3).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for phase in compact::Phase::ALL {
        let name = phase.name();
        let sc = setup(&s3, &format!("crash-{name}"), tmp.path()).await;
        let before = query_view(&sc.store).await;
        assert_eq!(diff(&before, &sc.want, true), None, "setup");
        let started = Instant::now();
        let mut p = match start_paused(&sc, "data", name) {
            Ok(p) => p,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        p.kill9();
        let got = shape(&sc.store).await;
        if got != shape_at(phase) {
            failures.push(format!(
                "{name}: bucket at the crash: {got:?}, expected {:?}",
                shape_at(phase)
            ));
        }
        // At the moment of the crash queries see every sample of stream a once.
        if let Some(d) = diff(&query_view(&sc.store).await, &sc.want, true) {
            failures.push(format!("{name}: right after kill -9: {d}"));
        }
        // Rerun (same data dir: the restarted compactor takes its lease back).
        match run_to_end(&sc, "data") {
            Ok(log) if log.contains("skipped=true") => {
                failures.push(format!("{name}: the rerun was locked out:\n{log}"));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        }
        if let Some(d) = diff(&query_view(&sc.store).await, &sc.want, false) {
            failures.push(format!("{name}: after the rerun: {d}"));
        }
        if let Err(e) = check_final_bucket(&sc.store).await {
            failures.push(format!("{name}: after the rerun: {e}"));
        }
        eprintln!(
            "phase {name}: crash + rerun checked in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_passes_at_once_do_not_corrupt_the_bucket() {
    let s3 = S3Server::start("compact-lease").expect("start SeaweedFS");
    wait_usable(&s3).await;
    let tmp = tempfile::tempdir().unwrap();

    // Deterministic: pass 1 holds the lease (paused mid-merge); pass 2 (another
    // data dir, i.e. another compactor) must do nothing.
    let sc = setup(&s3, "lease", tmp.path()).await;
    let before = bucket::list_block_metas(&*sc.store).await.unwrap().metas;
    let mut p1 = start_paused(&sc, "data1", "merge").unwrap();
    let log = run_to_end(&sc, "data2").unwrap();
    assert!(log.contains("skipped=true"), "{log}");
    assert_eq!(
        bucket::list_block_metas(&*sc.store).await.unwrap().metas,
        before
    );
    // Pass 1 dies holding the lease: another compactor still waits for it to
    // expire (it could be a live pass that is merely slow) ...
    p1.kill9();
    let log = run_to_end(&sc, "data2").unwrap();
    assert!(log.contains("skipped=true"), "{log}");
    // ... while the same compactor restarted takes it back and finishes.
    let log = run_to_end(&sc, "data1").unwrap();
    assert!(!log.contains("skipped=true"), "{log}");
    assert_eq!(diff(&query_view(&sc.store).await, &sc.want, false), None);
    check_final_bucket(&sc.store).await.unwrap();

    // A real race: two compactors started together on a fresh bucket prefix.
    let sc = setup(&s3, "race", tmp.path()).await;
    let mut a = compact_cmd(&sc, "r1");
    let mut b = compact_cmd(&sc, "r2");
    let ha = std::thread::spawn(move || a.output().unwrap());
    let hb = std::thread::spawn(move || b.output().unwrap());
    let (oa, ob) = (ha.join().unwrap(), hb.join().unwrap());
    assert!(oa.status.success() && ob.status.success());
    let logs = [oa, ob].map(|o| strip_ansi(&String::from_utf8_lossy(&o.stderr)));
    eprintln!(
        "race: passes skipped by the lease: {}",
        logs.iter().filter(|l| l.contains("skipped=true")).count()
    );
    assert_eq!(diff(&query_view(&sc.store).await, &sc.want, false), None);
    check_final_bucket(&sc.store).await.unwrap();
}
