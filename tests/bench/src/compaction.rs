//! `bench compact`: the compactor's two heavy steps on local blocks, each in its
//! own child process (so its peak RSS is its own) on a single-threaded runtime
//! (so its rate is per core):
//! - compaction 2h -> 8h: four 2h blocks of N series x 480 samples (15 s scrape)
//!   merged by `compact::merge::merge_blocks` into one 8h block;
//! - downsampling raw -> 5m of that 8h block (`compact::downsample`).
//!
//! Rates: samples/s and MB/s of compressed chunk bytes read, per CPU second of
//! the child (user + system time from /proc/self/stat), and peak RSS (VmHWM).
//! Run for 25k and 100k series, so that memory growth with block size shows.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use model::Labels;
use tsdb::block::{Block, BlockWriter};
use tsdb::meta::{ThanosMeta, RES_5M};
use ulid::Ulid;

const H: i64 = 3_600_000;
const START: i64 = 1_680_307_200_000;
const STEP: i64 = 15_000;
const SAMPLES: i64 = 480;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn labels(n: usize) -> Vec<Labels> {
    let mut v: Vec<Labels> = (0..n)
        .map(|i| {
            let (name, kind) = match i % 4 {
                0 => ("http_requests_total", "counter"),
                1 => ("process_cpu_seconds_total", "counter"),
                2 => ("node_memory_active_bytes", "gauge"),
                _ => ("go_goroutines", "gauge"),
            };
            Labels::from_pairs([
                ("__name__", name.to_string()),
                ("instance", format!("host-{:05}:9100", i / 40)),
                ("job", "node".to_string()),
                ("kind", kind.to_string()),
                ("series", format!("{}", i % 40)),
            ])
        })
        .collect();
    v.sort();
    v
}

/// Realistic values: counters grow by a noisy rate (integers for request
/// counts, fractions for CPU seconds), gauges random-walk around a level.
fn values(l: &Labels, seed: u64, block: i64, out: &mut Vec<(i64, f64)>) {
    out.clear();
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let name = l.get("__name__").unwrap_or("");
    let from = START + block * 2 * H;
    let base = (r.next() % 1000) as f64;
    let mut v = match name {
        "node_memory_active_bytes" => 4e9 + base * 1e6,
        "go_goroutines" => 50.0 + base / 10.0,
        _ => base * (block + 1) as f64 * 480.0,
    };
    for k in 0..SAMPLES {
        // Scrape timestamps jitter by a millisecond or two now and then.
        let jitter = if r.next().is_multiple_of(5) {
            (r.next() % 3) as i64
        } else {
            0
        };
        let t = from + k * STEP + jitter;
        v = match name {
            "http_requests_total" => v + (r.unit() * 20.0).floor(),
            "process_cpu_seconds_total" => v + (r.unit() * 15.0).round() / 100.0,
            "node_memory_active_bytes" => v + ((r.unit() - 0.5) * 64.0).round() * 4096.0,
            _ => (v + ((r.unit() - 0.5) * 4.0).round()).max(1.0),
        };
        out.push((t, v));
    }
}

/// Four consecutive 2h blocks, or (`replicas`) two replicas of the first 2h,
/// the second scraping 7 s later with its own noise.
fn write_source_blocks(dir: &Path, series: usize, replicas: bool) -> Result<u64> {
    let all = labels(series);
    let mut buf = Vec::with_capacity(SAMPLES as usize);
    let mut samples = 0;
    let n = if replicas { 2 } else { 4 };
    for b in 0..n as i64 {
        let (slot, shift) = if replicas { (0, b * 7_000) } else { (b, 0) };
        let mut w = BlockWriter::create_with_ulid(dir, Ulid::new())?;
        for (i, l) in all.iter().enumerate() {
            values(l, (i as u64) << 8 | b as u64, slot, &mut buf);
            for s in buf.iter_mut() {
                s.0 += shift;
            }
            samples += buf.len() as u64;
            w.add_series(l, buf.iter().copied())?;
        }
        let ext = [("cluster".to_string(), "bench".to_string())].into();
        let mut meta = w.finish(Some(ThanosMeta::new("sidecar", ext)))?;
        meta.min_time = START + slot * 2 * H;
        meta.max_time = meta.min_time + 2 * H;
        meta.write_dir(&dir.join(meta.ulid.to_string()))?;
    }
    Ok(samples)
}

fn chunk_bytes(block_dir: &Path) -> u64 {
    super::dir_bytes(block_dir, "chunks")
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let ut = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let st = f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ut + st) / tick
}

fn block_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// Child: merge the blocks of `src` into `out` (with penalty deduplication when
/// `penalty`); prints one line
/// `wall cpu samples_read chunk_bytes_read vmhwm_mib new_block_dir`.
pub fn child_merge(src: &Path, out: &Path, penalty: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dirs = block_dirs(src)?;
    let read: u64 = dirs.iter().map(|d| chunk_bytes(d)).sum();
    let (t, c) = (Instant::now(), cpu_seconds());
    let meta = rt.block_on(async {
        let mut blocks = Vec::new();
        for d in &dirs {
            blocks.push(Block::open_local(d).await?);
        }
        let thanos = ThanosMeta::new(
            "compactor",
            blocks[0]
                .meta()
                .thanos
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default(),
        );
        let read: u64 = blocks.iter().map(|b| b.meta().stats.num_samples).sum();
        let opts = compact::merge::MergeOptions {
            dedup: if penalty {
                compact::DedupFunc::Penalty
            } else {
                compact::DedupFunc::Chain
            },
            ..Default::default()
        };
        let m = compact::merge::merge_blocks_with(&blocks, out, Ulid::new(), thanos, opts)
            .await
            .map_err(anyhow::Error::from)?;
        anyhow::Ok((read, m))
    })?;
    let (samples_read, meta) = meta;
    println!(
        "{} {} {} {} {} {}",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c,
        samples_read,
        read,
        super::peak_rss_mib(),
        out.join(meta.ulid.to_string()).display()
    );
    Ok(())
}

/// Child: downsample the block `src` to 5m into `out`; same output line.
pub fn child_downsample(src: &Path, out: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let read = chunk_bytes(src);
    let (t, c) = (Instant::now(), cpu_seconds());
    let (samples, meta) = rt.block_on(async {
        let b = Block::open_local(src).await?;
        let samples = b.meta().stats.num_samples;
        let m = compact::downsample::downsample_block(&b, out, Ulid::new(), RES_5M)
            .await
            .map_err(anyhow::Error::from)?
            .context("nothing downsampled")?;
        anyhow::Ok((samples, m))
    })?;
    println!(
        "{} {} {} {} {} {}",
        t.elapsed().as_secs_f64(),
        cpu_seconds() - c,
        samples,
        read,
        super::peak_rss_mib(),
        out.join(meta.ulid.to_string()).display()
    );
    Ok(())
}

fn block_samples(dir: &Path) -> Result<u64> {
    Ok(tsdb::meta::BlockMeta::read_dir(dir)?.stats.num_samples)
}

struct Run {
    wall: f64,
    cpu: f64,
    samples: f64,
    bytes: f64,
    rss: f64,
    out: String,
}

fn run_child(step: &str, src: &Path, out: &Path) -> Result<Run> {
    let o = Command::new(std::env::current_exe()?)
        .arg(step)
        .arg(src)
        .arg(out)
        .output()?;
    if !o.status.success() {
        bail!("{step} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 6 {
        bail!("{step}: unexpected output {line:?}");
    }
    let n = |i: usize| {
        f[i].parse::<f64>()
            .with_context(|| format!("{step}: {line}"))
    };
    Ok(Run {
        wall: n(0)?,
        cpu: n(1)?,
        samples: n(2)?,
        bytes: n(3)?,
        rss: n(4)?,
        out: f[5].to_string(),
    })
}

fn print_row(what: &str, series: usize, r: &Run) {
    let cpu = r.cpu.max(1e-3);
    println!(
        "| {what} | {series} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.0} |",
        r.wall,
        r.cpu,
        r.samples / cpu / 1e6,
        r.bytes / 1e6,
        r.bytes / 1e6 / cpu,
        r.rss
    );
}

pub fn bench_compact() -> Result<()> {
    println!("\n| step | series | wall s | CPU s | M samples/s per core | chunk MB read | MB/s per core | peak RSS MiB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for series in [25_000usize, 100_000] {
        let tmp = tempfile::tempdir()?;
        let src = tmp.path().join("src");
        let merged = tmp.path().join("merged");
        let down = tmp.path().join("down");
        for d in [&src, &merged, &down] {
            std::fs::create_dir_all(d)?;
        }
        let t = Instant::now();
        let samples = write_source_blocks(&src, series, false)?;
        eprintln!(
            "wrote 4 blocks, {series} series, {samples} samples in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let m = run_child("compact-merge", &src, &merged)?;
        if m.samples as u64 != samples || block_samples(Path::new(&m.out))? != samples {
            bail!("merge kept {} of {samples} samples", m.samples);
        }
        print_row("compaction 4 x 2h -> 8h", series, &m);
        let d = run_child("compact-downsample", Path::new(&m.out), &down)?;
        print_row("downsampling 8h raw -> 5m", series, &d);
        // Vertical compaction: two HA replicas of one 2h block, penalty dedup
        // (every chunk overlaps: decoded, merged, re-encoded).
        let rep = tmp.path().join("replicas");
        let vout = tmp.path().join("vertical");
        std::fs::create_dir_all(&rep)?;
        std::fs::create_dir_all(&vout)?;
        write_source_blocks(&rep, series, true)?;
        let v = run_child("compact-vertical", &rep, &vout)?;
        print_row("vertical 2 replicas x 2h, penalty dedup", series, &v);
    }
    Ok(())
}
