//! `bench lambda`: the Lambda functions as Lambda runs them, under the local
//! runtime-API emulator (`harness::lambda`), over a real S3 server (SeaweedFS
//! on loopback) holding 200 one-hour blocks of 2,000 series:
//! - binary size (profile `lambda-release`: release, stripped, as
//!   `make lambda-build` packages it);
//! - init time: process start to its first `next` call on the runtime API
//!   (median of 5 starts, binary in the page cache);
//! - first answer: process start to the first answered invocation, on a cold
//!   instance (empty /tmp), without and with the shared index cache (bucket
//!   index + index headers in the bucket), for store-read (a Series call over
//!   the last 2 h of one job) and query (an instant query over the last 2 h).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use harness::lambda::{function_url_event, http_answer, Emulator};
use prost::Message;
use storeapi::pb;

const HOUR: i64 = 3_600_000;
const START: i64 = 1_680_307_200_000;
const BLOCKS: usize = 200;
const SERIES: usize = 2_000;

fn release_bin(name: &str) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "lambda-release",
            "-q",
            "-p",
            "aether",
            "--bin",
            name,
        ])
        .status()?;
    if !st.success() {
        bail!("building {name} failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    Ok(target.join("lambda-release").join(name))
}

struct Measure {
    init_ms: f64,
    first_answer_ms: f64,
}

async fn cold_start(
    bin: &Path,
    function: &str,
    yaml: &str,
    tmp: &Path,
    event: Vec<u8>,
    check: impl Fn(&harness::lambda::Outcome) -> Result<()>,
) -> Result<Measure> {
    let emu = Emulator::start(function).await?;
    let instance_tmp = tempfile::tempdir_in(tmp)?;
    let start = Instant::now();
    let mut p = emu.spawn(
        bin,
        &[
            ("AETHER_OBJSTORE_CONFIG", yaml.to_string()),
            ("TMPDIR", instance_tmp.path().display().to_string()),
            ("AETHER_LOG_LEVEL", "warn".to_string()),
        ],
        &tmp.join(format!("{function}.log")),
    )?;
    let ready = emu.wait_ready(Duration::from_secs(30)).await;
    let ready = match ready {
        Ok(t) => t,
        Err(e) => bail!("{e}: {}", p.log()),
    };
    let out = emu.invoke(event).await?;
    let answered = Instant::now();
    check(&out).with_context(|| p.log())?;
    p.stop(Duration::from_secs(2));
    Ok(Measure {
        init_ms: (ready - start).as_secs_f64() * 1e3,
        first_answer_ms: (answered - start).as_secs_f64() * 1e3,
    })
}

async fn bench() -> Result<()> {
    let s3 = harness::S3Server::start("bench-lambda")?;
    let yaml = s3.objstore_yaml();
    let tmp = tempfile::tempdir()?;
    let blocks_dir = tmp.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir)?;
    let metas = crate::store::write_blocks(&blocks_dir, BLOCKS, SERIES)?;
    let store: Arc<dyn bucket::object_store::ObjectStore> =
        bucket::ObjstoreConfig::parse(&yaml)?.build()?;
    crate::store::upload_all(&store, &blocks_dir, &metas).await?;

    let end = START + BLOCKS as i64 * HOUR;
    let series_req = pb::SeriesRequest {
        min_time: end - 2 * HOUR,
        max_time: end,
        matchers: vec![
            pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "up".into(),
            },
            pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "job".into(),
                value: "bench".into(),
            },
        ],
        ..Default::default()
    };
    let store_event = serde_json::to_vec(&serde_json::json!({
        "method": "series",
        "request": base64::engine::general_purpose::STANDARD.encode(series_req.encode_to_vec()),
    }))?;
    let store_check = |o: &harness::lambda::Outcome| -> Result<()> {
        let body = o.result.as_ref().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let a: storeapi::lambda::Answer = serde_json::from_slice(body)?;
        if a.error.is_some() || a.frames.len() != SERIES / 10 {
            bail!(
                "unexpected answer: {} frames, {:?}",
                a.frames.len(),
                a.error
            );
        }
        Ok(())
    };
    let qs = format!("query=count%28up%29&time={}", end / 1000);
    let query_event = function_url_event("GET", "/api/v1/query", &qs, None);
    let query_check = |o: &harness::lambda::Outcome| -> Result<()> {
        let a = http_answer(o)?;
        let body = String::from_utf8_lossy(&a.body);
        if a.status != 200 || !body.contains(&format!("\"{}\"", SERIES / 10)) {
            bail!("unexpected answer {}: {body}", a.status);
        }
        Ok(())
    };

    println!("\n## Lambda functions (bench lambda)\n");
    println!(
        "Local runtime-API emulator, SeaweedFS on loopback, {BLOCKS} blocks x {SERIES} series; \
         each row a new process with an empty /tmp (a cold instance).\n"
    );
    println!("| function | binary | case | init (start -> first next, median of 5) | first answer (start -> answered, median of 3) |");
    println!("|---|---|---|---|---|");
    for (bin_name, function, event, check) in [
        (
            "aether-store-lambda",
            "store",
            &store_event,
            &store_check as &dyn Fn(&harness::lambda::Outcome) -> Result<()>,
        ),
        ("aether-query-lambda", "query", &query_event, &query_check),
    ] {
        let bin = release_bin(bin_name)?;
        let size = std::fs::metadata(&bin)?.len() as f64 / (1 << 20) as f64;
        let median = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        for (case, clear) in [
            ("no shared index cache", true),
            ("shared index cache", false),
        ] {
            let (mut inits, mut answers) = (Vec::new(), Vec::new());
            // One start to load the binary into the page cache, then 3 timed.
            for run in 0..4 {
                if clear {
                    crate::store::clear_cache(&store).await?;
                }
                let m = cold_start(&bin, function, &yaml, tmp.path(), event.clone(), check).await?;
                if run > 0 {
                    inits.push(m.init_ms);
                    answers.push(m.first_answer_ms);
                }
            }
            // Two more starts for the init median of 5.
            for _ in 0..2 {
                let m = cold_start(&bin, function, &yaml, tmp.path(), event.clone(), check).await?;
                inits.push(m.init_ms);
            }
            println!(
                "| {bin_name} | {size:.1} MiB | {case} | {:.1} ms | {:.0} ms |",
                median(inits),
                median(answers)
            );
        }
    }
    Ok(())
}

pub fn bench_lambda() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
