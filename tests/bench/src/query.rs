//! `bench query`: the querier's HTTP API against Prometheus 2.42's, over the
//! same demo data: per query median and p99 latency through both APIs and the
//! ratio; then a load test (concurrent clients against the querier):
//! throughput, p99, errors, peak RSS.
//!
//! Prometheus gets the data backfilled with `promtool tsdb create-blocks-from
//! openmetrics`; Aether gets it as blocks (thanos section, no external labels)
//! in a FILESYSTEM bucket served by an in-process `store::BucketStore` behind a
//! `query::router` on a local port. Both are queried by the same minimal
//! HTTP/1.1 client (one connection per request).
//!
//! Knobs: `QUERY_BENCH_INSTANCES` (default 22: ~1k series),
//! `QUERY_BENCH_RUNS` (default 30), `QUERY_BENCH_CLIENTS` (default 32),
//! `QUERY_BENCH_LOAD_SECS` (default 60).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tools::demo::{self, DemoSpec};
use tsdb::meta::ThanosMeta;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The engine issue's query set (as in `bench promql`), less the two slowest.
const QUERIES: &[(&str, &str)] = &[
    ("rate", "rate(http_requests_total[5m])"),
    ("sum(rate)", "sum(rate(http_requests_total[5m]))"),
    (
        "sum by (rate)",
        "sum by (handler) (rate(http_requests_total[5m]))",
    ),
    (
        "histogram_quantile",
        "histogram_quantile(0.9, sum by (handler, le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "join 1:1",
        "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
    ),
    (
        "join group_left",
        "rate(http_requests_total[5m]) / on(instance) group_left sum by (instance) (rate(http_requests_total[5m]))",
    ),
    ("topk", "topk(5, rate(http_requests_total[5m]))"),
    (
        "avg_over_time",
        "avg_over_time(node_memory_available_bytes[10m])",
    ),
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn range_path(query: &str, start: i64, end: i64, step: i64) -> String {
    format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={}",
        enc(query),
        secs(start),
        secs(end),
        secs(step)
    )
}

/// Quantile `q` of `v` (sorted in place), nearest rank.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// One GET over a fresh connection: (status, body). Handles chunked bodies.
async fn get(addr: &str, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let mut body = buf[head_end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::with_capacity(body.len());
        let mut rest = &body[..];
        loop {
            let nl = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("bad chunk")?;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..nl])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Ok((status, body))
}

/// Series in a successful answer.
fn series_count(body: &[u8]) -> Result<usize> {
    let s = std::str::from_utf8(body)?;
    if !s.starts_with("{\"status\":\"success\"") {
        bail!("not a success: {s:.300}");
    }
    Ok(s.matches("{\"metric\":").count())
}

/// Latencies (s) of `runs` GETs after one warm-up, and the series count.
async fn latencies(addr: &str, path: &str, runs: usize) -> Result<(Vec<f64>, usize)> {
    let mut out = Vec::with_capacity(runs);
    let mut n = 0;
    for i in 0..=runs {
        let t = Instant::now();
        let (code, body) = get(addr, path).await?;
        let el = t.elapsed().as_secs_f64();
        if code != 200 {
            bail!(
                "{addr}{path}: HTTP {code}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        n = series_count(&body)?;
        if i > 0 {
            out.push(el);
        }
    }
    Ok((out, n))
}

/// Resets the process's peak RSS (VmHWM) to its current RSS.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn bench_query() -> Result<()> {
    let instances: usize = env_or("QUERY_BENCH_INSTANCES", 22);
    let runs: usize = env_or("QUERY_BENCH_RUNS", 30);
    let clients: usize = env_or("QUERY_BENCH_CLIENTS", 32);
    let load_secs: u64 = env_or("QUERY_BENCH_LOAD_SECS", 60);

    let tmp = tempfile::tempdir()?;
    let base = 1_700_000_000_000 / DAY * DAY;
    // 6 h of queries plus an hour before them for ranges.
    let spec = DemoSpec {
        start: base + 137,
        end: base + 7 * HOUR + MINUTE,
        interval: 30 * SECOND,
        instances,
    };
    let nseries = demo::series(&spec).len();
    let t = Instant::now();

    // Prometheus: promtool backfill of the OpenMetrics text.
    let om = tmp.path().join("demo.om");
    demo::write_openmetrics(&spec, std::io::BufWriter::new(std::fs::File::create(&om)?))?;
    let prom_data = tmp.path().join("prom/data");
    std::fs::create_dir_all(&prom_data)?;
    harness::promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        prom_data.to_str().unwrap(),
    ])?;
    std::fs::remove_file(&om)?;

    // Aether: 2 h blocks in a FILESYSTEM bucket.
    let blocks = tmp.path().join("blocks");
    std::fs::create_dir_all(&blocks)?;
    let bucket_dir = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir)?;
    let metas = demo::write_blocks(&spec, 2 * HOUR, &blocks)?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = bucket::ObjstoreConfig::filesystem(&bucket_dir).build()?;
    server_rt.block_on(async {
        for mut m in metas {
            m.thanos = Some(ThanosMeta::new("bench", BTreeMap::new()));
            bucket::upload_block(&*store, &blocks.join(m.ulid.to_string()), Some(&m)).await?;
        }
        anyhow::Ok(())
    })?;
    std::fs::remove_dir_all(&blocks)?;
    let bs: Arc<dyn storeapi::StoreApi> = Arc::new(store::BucketStore::new(
        store,
        store::StoreConfig::default(),
    ));
    let set = Arc::new(query::EndpointSet::from_stores(vec![("bucket".into(), bs)]));
    let querier = query::Querier::new(set, query::QuerierConfig::default());
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let ours = listener.local_addr()?.to_string();
    server_rt.spawn(query::serve(querier, listener, std::future::pending()));

    let mut prom = harness::Prometheus::start(
        "global:\n  scrape_interval: 1m\n",
        &prom_data,
        &[
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
            "--query.max-samples=500000000",
        ],
    )?;
    let theirs = format!("127.0.0.1:{}", prom.port);
    eprintln!(
        "query: {nseries} series, {} h at 30 s, loaded in {:.1}s",
        (spec.end - spec.start) / HOUR,
        t.elapsed().as_secs_f64()
    );

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let end = base + 7 * HOUR;
    let spans: &[(&str, i64, i64)] = &[("1h", HOUR, 15 * SECOND), ("6h", 6 * HOUR, MINUTE)];
    println!(
        "\nRange queries through the HTTP APIs ({nseries} series), {runs} runs after a warm-up, \
         one connection per request; ratio = Aether / Prometheus median (below 1: we are faster).\n"
    );
    println!("| span (step) | query | Aether median (ms) | Aether p99 (ms) | Prometheus median (ms) | Prometheus p99 (ms) | ratio |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let result = client_rt.block_on(async {
        for &(span_name, span, step) in spans {
            for (name, q) in QUERIES {
                let path = range_path(q, end - span, end, step);
                let (mut a, an) = latencies(&ours, &path, runs).await?;
                let (mut p, pn) = latencies(&theirs, &path, runs).await?;
                if an != pn {
                    bail!("{q}: {an} series from Aether, {pn} from Prometheus");
                }
                let (am, pm) = (quantile(&mut a, 0.5), quantile(&mut p, 0.5));
                println!(
                    "| {span_name} ({}s) | {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                    step / SECOND,
                    am * 1e3,
                    quantile(&mut a, 0.99) * 1e3,
                    pm * 1e3,
                    quantile(&mut p, 0.99) * 1e3,
                    am / pm
                );
            }
        }
        anyhow::Ok(())
    });
    prom.proc.stop(Duration::from_secs(10));
    result?;

    // Load: `clients` clients, each looping over the queries (1 h span, 15 s
    // step) for `load_secs`.
    reset_peak_rss();
    let rss_before = crate::peak_rss_mib();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let t = Instant::now();
    client_rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (stop, errors, first_error, lat, addr) = (
                stop.clone(),
                errors.clone(),
                first_error.clone(),
                lat.clone(),
                ours.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (_, q) = QUERIES[i % QUERIES.len()];
                    i += 1;
                    let path = range_path(q, end - HOUR, end, 15 * SECOND);
                    let t = Instant::now();
                    let ok = match get(&addr, &path).await {
                        Ok((200, body)) => series_count(&body).map_err(|e| e.to_string()),
                        Ok((code, body)) => {
                            Err(format!("HTTP {code}: {}", String::from_utf8_lossy(&body)))
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    mine.push(t.elapsed().as_secs_f64());
                    if let Err(e) = ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
                    }
                }
                lat.lock().unwrap().extend(mine);
            }));
        }
        tokio::time::sleep(Duration::from_secs(load_secs)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = t.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *lat.lock().unwrap());
    let n = lat.len();
    println!(
        "\nLoad: {clients} concurrent clients for {load_secs} s against the querier, round-robin \
         over the queries above (1h span, 15 s step), one connection per request.\n"
    );
    println!(
        "| requests | throughput (req/s) | median (ms) | p99 (ms) | errors | peak RSS (MiB) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {n} | {:.1} | {:.1} | {:.1} | {} | {:.0} (start {rss_before:.0}) |",
        n as f64 / elapsed,
        quantile(&mut lat, 0.5) * 1e3,
        quantile(&mut lat, 0.99) * 1e3,
        errors.load(Ordering::Relaxed),
        crate::peak_rss_mib()
    );
    if let Some(e) = first_error.lock().unwrap().take() {
        bail!(
            "{} errors under load, first: {e}",
            errors.load(Ordering::Relaxed)
        );
    }
    drop(server_rt);
    Ok(())
}
