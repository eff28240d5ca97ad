//! Whole blocks: the streaming writer's output read back by the block reader, writer
//! contract errors, and corrupt blocks (truncated files, flipped bytes, random
//! bytes, bad meta.json) that must give errors, never panics.

use std::path::{Path, PathBuf};

use model::{Labels, Matcher};
use tsdb::block::{Block, BlockWriter};

fn series(n: usize) -> Vec<(Labels, Vec<(i64, f64)>)> {
    (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", format!("metric_{}", i % 7)),
                ("instance", format!("host-{i:04}")),
                (
                    "job",
                    if i % 2 == 0 {
                        "a".into()
                    } else {
                        "b".to_string()
                    },
                ),
            ]);
            let samples = (0..(50 + i % 300) as i64)
                .map(|k| {
                    (
                        1_000_000 + k * 15_000 + (i as i64 % 3),
                        (k * i as i64) as f64 * 0.5,
                    )
                })
                .collect();
            (labels, samples)
        })
        .collect()
}

fn write_block(dir: &Path, data: &mut [(Labels, Vec<(i64, f64)>)]) -> PathBuf {
    data.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = BlockWriter::create(dir).unwrap();
    for (l, s) in data.iter() {
        w.add_series(l, s.iter().copied()).unwrap();
    }
    let meta = w.finish(None).unwrap();
    dir.join(meta.ulid.to_string())
}

async fn read_all(dir: &Path) -> tsdb::Result<Vec<(Labels, Vec<(i64, f64)>)>> {
    let b = Block::open_local(dir).await?;
    let mut out = Vec::new();
    for s in b.select(&[vec![]]).await? {
        let mut v = Vec::new();
        b.read_float_samples(&s, i64::MIN, i64::MAX, &mut v).await?;
        out.push((s.labels, v));
    }
    Ok(out)
}

#[tokio::test]
async fn writer_output_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut data = series(500);
    let dir = write_block(tmp.path(), &mut data);
    let got = read_all(&dir).await.unwrap();
    assert_eq!(got, data);
    let b = Block::open_local(&dir).await.unwrap();
    let m = b.meta();
    assert_eq!(m.stats.num_series, 500);
    assert_eq!(
        m.stats.num_samples,
        data.iter().map(|d| d.1.len() as u64).sum::<u64>()
    );
    assert_eq!(m.min_time, 1_000_000);
    // Chunks hold at most 120 samples, like Prometheus's.
    let sel = b
        .select(&[vec![Matcher::equal("instance", "host-0299")]])
        .await
        .unwrap();
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[0].chunks.len(), (50 + 299usize).div_ceil(120));
    assert!(!tmp.path().read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn writer_rejects_broken_contracts() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Labels::from_pairs([("__name__", "a")]);
    let b = Labels::from_pairs([("__name__", "b")]);
    let mut w = BlockWriter::create(tmp.path()).unwrap();
    w.add_series(&b, [(1, 1.0)]).unwrap();
    let e = w.add_series(&a, [(1, 1.0)]).unwrap_err();
    assert!(e.to_string().contains("label order"), "{e}");
    let e = w.add_series(&b, [(2, 1.0)]).unwrap_err();
    assert!(e.to_string().contains("label order"), "{e}");
    let c = Labels::from_pairs([("__name__", "c")]);
    let e = w.add_series(&c, [(5, 1.0), (5, 2.0)]).unwrap_err();
    assert!(e.to_string().contains("not after"), "{e}");
    w.abort();
    let w = BlockWriter::create(tmp.path()).unwrap();
    assert!(w.finish(None).is_err(), "an empty block is refused");
    assert_eq!(
        tmp.path().read_dir().unwrap().count(),
        0,
        "nothing left behind"
    );
}

/// A tiny deterministic PRNG for reproducible corruption.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn corrupt_blocks_give_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut data = series(40);
    let good = write_block(tmp.path(), &mut data);
    let files = ["meta.json", "index", "chunks/000001", "tombstones"];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut errors = 0;
    let mut cases = 0;
    for f in files {
        let orig = std::fs::read(good.join(f)).unwrap();
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for cut in [
            0,
            1,
            4,
            7,
            8,
            orig.len() / 3,
            orig.len() / 2,
            orig.len() - 1,
        ] {
            variants.push(orig[..cut.min(orig.len())].to_vec());
        }
        for _ in 0..60 {
            let mut v = orig.clone();
            let i = (rng.next() as usize) % v.len();
            v[i] ^= 1 << (rng.next() % 8);
            variants.push(v);
        }
        variants.push((0..orig.len()).map(|_| rng.next() as u8).collect());
        for v in variants {
            let case = tempfile::tempdir().unwrap();
            harness_copy(&good, case.path());
            std::fs::write(case.path().join(f), &v).unwrap();
            cases += 1;
            match read_all(case.path()).await {
                Err(e) => {
                    errors += 1;
                    assert!(!e.to_string().is_empty());
                }
                // Some flips land in bytes no checksum covers (padding, JSON
                // whitespace); then the data must still be exactly right.
                Ok(got) => assert_eq!(got, data, "corrupt {f} read as different data"),
            }
        }
    }
    assert!(
        errors * 2 > cases,
        "only {errors} of {cases} corruptions were caught"
    );
}

fn harness_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("chunks")).unwrap();
    for f in ["meta.json", "index", "chunks/000001", "tombstones"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[tokio::test]
async fn tombstones_are_applied() {
    use tsdb::tombstones::{self, Interval, Tombstones};
    let tmp = tempfile::tempdir().unwrap();
    let mut data = series(3);
    let dir = write_block(tmp.path(), &mut data);
    let b = Block::open_local(&dir).await.unwrap();
    let sel = b.select(&[vec![]]).await.unwrap();
    // Delete a middle stretch of the second series.
    let (lo, hi) = (data[1].1[10].0, data[1].1[20].0);
    let mut ts = Tombstones::default();
    ts.add(sel[1].series_ref, Interval { mint: lo, maxt: hi });
    std::fs::write(dir.join("tombstones"), tombstones::encode(&ts)).unwrap();
    let got = read_all(&dir).await.unwrap();
    assert_eq!(got[0], data[0]);
    assert_eq!(got[2], data[2]);
    let want: Vec<_> = data[1]
        .1
        .iter()
        .copied()
        .filter(|(t, _)| *t < lo || *t > hi)
        .collect();
    assert_eq!(got[1].1, want);
    assert_eq!(got[1].1.len(), data[1].1.len() - 11);
}
