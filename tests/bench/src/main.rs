//! `make bench`: throughput and size figures for Aether, side by side with the
//! reference where one exists (promtool 2.42), printed as a Markdown table that
//! `docs/benchmarks.md` records. Usage: `bench [all|tsdb|writer-1m|store|promql|query|compact]`.

mod compaction;
mod lambda;
mod promql;
mod query;
mod store;

/// The allocator the `aether` binary uses, so that the figures are the product's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use model::{Labels, MatchType, Matcher};
use tools::demo::{self, DemoSpec};
use tsdb::block::{Block, BlockWriter};
use tsdb::chunkenc::{XorChunk, XorIterator};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn dir_bytes(dir: &Path, what: &str) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            total += dir_bytes(&p, what);
        } else {
            let rel = p.to_string_lossy();
            let is_chunk = rel.contains("/chunks/");
            let take = match what {
                "chunks" => is_chunk,
                "index" => p.file_name().is_some_and(|n| n == "index"),
                _ => true,
            };
            if take {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn row(name: &str, ours: String, reference: String, ratio: String) {
    println!("| {name} | {ours} | {reference} | {ratio} |");
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed().as_secs_f64()))
}

fn bench_tsdb() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let start = 1_680_307_200_000;
    let spec = DemoSpec {
        start,
        end: start + 12 * 3_600_000,
        interval: 15_000,
        instances: 20,
    };
    let om = tmp.path().join("in.om");
    demo::write_openmetrics(&spec, std::io::BufWriter::new(std::fs::File::create(&om)?))?;
    let all = demo::series(&spec);
    let samples: usize = all
        .iter()
        .map(|s| s.samples(&spec, spec.start, spec.end).len())
        .sum();
    println!(
        "\nInput: {} series, {samples} samples over 12h at 15s (OpenMetrics, {} MiB)\n",
        all.len(),
        std::fs::metadata(&om)?.len() >> 20
    );
    println!("| measure | aether | promtool 2.42 | ratio (aether/promtool) |");
    println!("| --- | --- | --- | --- |");

    // Backfill: the same OpenMetrics file through both.
    let theirs = tmp.path().join("promtool");
    let (_, t_theirs) = timed(|| {
        harness::promtool(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            om.to_str().unwrap(),
            theirs.to_str().unwrap(),
        ])?;
        Ok(())
    })?;
    let ours = tmp.path().join("aether");
    let (_, t_ours) = timed(|| {
        Ok(tools::backfill::from_openmetrics_file(
            &om,
            &ours,
            2 * 3_600_000,
        )?)
    })?;
    row(
        "backfill time (s)",
        format!("{t_ours:.2}"),
        format!("{t_theirs:.2}"),
        format!("{:.2}", t_ours / t_theirs),
    );
    for what in ["chunks", "all"] {
        let (o, t) = (dir_bytes(&ours, what), dir_bytes(&theirs, what));
        row(
            &format!("bytes/sample ({what})"),
            format!("{:.3}", o as f64 / samples as f64),
            format!("{:.3}", t as f64 / samples as f64),
            format!("{:.3}", o as f64 / t as f64),
        );
    }

    // Dump: the same blocks (promtool's) through both.
    let rt = tokio::runtime::Runtime::new()?;
    let (ours_dump, t_ours) = timed(|| {
        let mut out = Vec::new();
        rt.block_on(tools::dump::dump(
            &theirs,
            i64::MIN,
            i64::MAX,
            &[],
            &mut out,
        ))?;
        Ok(out)
    })?;
    let (theirs_dump, t_theirs) = timed(|| harness::promtool_dump(&theirs, &[]))?;
    if ours_dump != theirs_dump.as_bytes() {
        bail!("dumps differ");
    }
    row(
        "dump (samples/s)",
        format!("{:.0}", samples as f64 / t_ours),
        format!("{:.0}", samples as f64 / t_theirs),
        format!("{:.2} (speed-up)", t_theirs / t_ours),
    );

    // XOR encode and decode of the demo series.
    let series: Vec<Vec<(i64, f64)>> = all
        .iter()
        .map(|s| s.samples(&spec, spec.start, spec.end))
        .collect();
    let (chunks, t_enc) = timed(|| {
        let mut chunks = Vec::new();
        for s in &series {
            for part in s.chunks(120) {
                let mut c = XorChunk::new();
                for &(t, v) in part {
                    c.append(t, v);
                }
                chunks.push(c.bytes().to_vec());
            }
        }
        Ok(chunks)
    })?;
    let rounds = 5;
    let (n, t_dec) = timed(|| {
        let mut n = 0usize;
        let mut sum = 0.0;
        for _ in 0..rounds {
            for c in &chunks {
                for s in XorIterator::new(c)? {
                    let (_, v) = s?;
                    sum += v;
                    n += 1;
                }
            }
        }
        std::hint::black_box(sum);
        Ok(n)
    })?;
    row(
        "XOR encode (samples/s, 1 core)",
        format!("{:.0}", samples as f64 / t_enc),
        "-".into(),
        "-".into(),
    );
    row(
        "XOR decode (samples/s, 1 core)",
        format!("{:.0}", n as f64 / t_dec),
        "-".into(),
        "-".into(),
    );

    // Postings lookups on one of promtool's blocks.
    let block_dir = std::fs::read_dir(&theirs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("meta.json").exists())
        .context("no block")?;
    let block = rt.block_on(Block::open_local(&block_dir))?;
    let ir = block.index();
    let instances = ir.label_values("instance");
    let names = ir.label_values("__name__");
    let lookups = 20_000;
    let (found, t) = timed(|| {
        rt.block_on(async {
            let mut found = 0usize;
            for i in 0..lookups {
                let ms = vec![
                    Matcher::equal("__name__", names[i % names.len()].clone()),
                    Matcher::equal("instance", instances[i % instances.len()].clone()),
                ];
                found += ir.postings_for_matchers(&ms).await?.len();
            }
            Ok::<_, anyhow::Error>(found)
        })
    })?;
    row(
        "postings lookup, 2 equality matchers (lookups/s)",
        format!("{:.0}", lookups as f64 / t),
        "-".into(),
        "-".into(),
    );
    std::hint::black_box(found);
    let (_, t) = timed(|| {
        rt.block_on(async {
            for i in 0..lookups / 10 {
                let ms = vec![
                    Matcher::new(MatchType::Regex, "__name__", "http_.*")?,
                    Matcher::new(MatchType::Regex, "instance", format!("api-{}.*", i % 10))?,
                ];
                ir.postings_for_matchers(&ms).await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    })?;
    row(
        "postings lookup, 2 regex matchers (lookups/s)",
        format!("{:.0}", (lookups / 10) as f64 / t),
        "-".into(),
        "-".into(),
    );
    Ok(())
}

/// Writes a block of 1M series x 120 samples with the streaming writer and reports
/// peak RSS: the samples alone would take ~1.9 GB if held.
fn bench_writer_1m() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let n = 1_000_000usize;
    let before = peak_rss_mib();
    let t = Instant::now();
    let mut w = BlockWriter::create(tmp.path())?;
    let mut names: Vec<String> = (0..n).map(|i| format!("{i:07}")).collect();
    names.sort();
    for (i, id) in names.iter().enumerate() {
        let labels = Labels::from_pairs([
            ("__name__", "bench_series"),
            ("id", id.as_str()),
            ("shard", ["a", "b", "c", "d"][i % 4]),
        ]);
        w.add_series(
            &labels,
            (0..120i64).map(|k| (k * 15_000, (k as f64) * 1.5 + (i % 100) as f64)),
        )?;
    }
    let meta = w.finish(None)?;
    let secs = t.elapsed().as_secs_f64();
    let dir = tmp.path().join(meta.ulid.to_string());
    println!(
        "| streaming writer, 1M series x 120 samples | {secs:.1} s, {:.1} M samples/s, peak RSS {:.0} MiB (start {before:.0} MiB), block {} MiB | - | - |",
        meta.stats.num_samples as f64 / secs / 1e6,
        peak_rss_mib(),
        dir_bytes(&dir, "all") >> 20
    );
    // promtool reads it.
    let out = harness::promtool(&[
        "tsdb",
        "analyze",
        tmp.path().to_str().unwrap(),
        &meta.ulid.to_string(),
    ])?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains("Series: 1000000") {
        bail!("promtool analyze disagrees: {text}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    match what.as_str() {
        "tsdb" => bench_tsdb(),
        "writer-1m" => bench_writer_1m(),
        "promql" => promql::bench_promql(),
        "store" => store::bench_store(),
        "query" => query::bench_query(),
        "compact" => compaction::bench_compact(),
        "lambda" => lambda::bench_lambda(),
        "compact-merge" | "compact-vertical" | "compact-downsample" => {
            let arg = |i: usize| {
                std::env::args()
                    .nth(i)
                    .map(std::path::PathBuf::from)
                    .ok_or_else(|| anyhow::anyhow!("{what}: want SRC OUT"))
            };
            let (src, out) = (arg(2)?, arg(3)?);
            if what == "compact-merge" || what == "compact-vertical" {
                compaction::child_merge(&src, &out, what == "compact-vertical")
            } else {
                compaction::child_downsample(&src, &out)
            }
        }
        "all" => {
            bench_tsdb()?;
            // In its own process so its peak RSS is its own.
            let exe = std::env::current_exe()?;
            let st = Command::new(exe).arg("writer-1m").status()?;
            if !st.success() {
                bail!("writer-1m failed");
            }
            // The store benchmark in its own process too (peak RSS).
            let st = Command::new(std::env::current_exe()?)
                .arg("store")
                .status()?;
            if !st.success() {
                bail!("store failed");
            }
            promql::bench_promql()?;
            // The querier's load test in its own process (peak RSS).
            let st = Command::new(std::env::current_exe()?)
                .arg("query")
                .status()?;
            if !st.success() {
                bail!("query failed");
            }
            compaction::bench_compact()?;
            lambda::bench_lambda()?;
            Ok(())
        }
        other => {
            bail!("unknown benchmark {other:?}: want all, tsdb, writer-1m, store, promql, query, compact or lambda")
        }
    }
}
