//! Pure planning: streams (groups), Thanos's compaction planner, which blocks are
//! covered by others, what to downsample and what retention expires. No I/O.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use tsdb::meta::{BlockMeta, RES_1H, RES_5M, RES_RAW};
use ulid::Ulid;

/// Thanos's default compaction ranges: 2h, 8h, 2d, 14d (ms).
pub const DEFAULT_RANGES: [i64; 4] = [
    2 * 3_600_000,
    8 * 3_600_000,
    48 * 3_600_000,
    14 * 24 * 3_600_000,
];

/// A raw block is downsampled to 5m once it spans at least 40h.
pub const DOWNSAMPLE_RANGE_5M: i64 = 40 * 3_600_000;
/// A 5m block is downsampled to 1h once it spans at least 10 days.
pub const DOWNSAMPLE_RANGE_1H: i64 = 10 * 24 * 3_600_000;

/// External labels of a block (`thanos.labels`) minus the replica labels.
pub fn stream_labels(meta: &BlockMeta, replica_labels: &[String]) -> BTreeMap<String, String> {
    let mut l = meta
        .thanos
        .as_ref()
        .map(|t| t.labels.clone())
        .unwrap_or_default();
    for r in replica_labels {
        l.remove(r);
    }
    l
}

/// Prometheus's `labels.Hash` of a label map: xxhash64 over `name 0xff value 0xff`
/// for each label in name order.
pub fn labels_hash(labels: &BTreeMap<String, String>) -> u64 {
    model::prometheus_hash(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// A compaction group: one stream (external labels without replica labels) at
/// one resolution. Displayed as Thanos's group key `<resolution>@<labels hash>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub resolution: i64,
    pub labels_hash: u64,
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.resolution, self.labels_hash)
    }
}

impl GroupKey {
    pub fn of(meta: &BlockMeta, replica_labels: &[String]) -> GroupKey {
        GroupKey {
            resolution: meta.resolution(),
            labels_hash: labels_hash(&stream_labels(meta, replica_labels)),
        }
    }
}

/// Blocks by group, each group sorted by (minTime, ULID).
pub fn group_blocks(
    metas: &[BlockMeta],
    replica_labels: &[String],
) -> BTreeMap<GroupKey, Vec<BlockMeta>> {
    let mut g: BTreeMap<GroupKey, Vec<BlockMeta>> = BTreeMap::new();
    for m in metas {
        g.entry(GroupKey::of(m, replica_labels))
            .or_default()
            .push(m.clone());
    }
    for v in g.values_mut() {
        v.sort_by_key(|m| (m.min_time, m.ulid));
    }
    g
}

/// Blocks whose compaction sources are all contained in another block of the same
/// group (Thanos's deduplicate filter): after a compacted block is uploaded its
/// sources are redundant even if a crash kept them from being marked. For equal
/// source sets the block with the greater ULID stays.
pub fn covered_blocks(metas: &[BlockMeta], replica_labels: &[String]) -> HashSet<Ulid> {
    let mut out = HashSet::new();
    for group in group_blocks(metas, replica_labels).values() {
        let sets: Vec<(Ulid, BTreeSet<Ulid>)> = group
            .iter()
            .map(|m| (m.ulid, m.compaction.sources.iter().copied().collect()))
            .collect();
        for (id, s) in &sets {
            if s.is_empty() {
                continue;
            }
            let covered = sets.iter().any(|(other, o)| {
                other != id && s.is_subset(o) && (s.len() < o.len() || other > id)
            });
            if covered {
                out.insert(*id);
            }
        }
    }
    out
}

/// Thanos's `selectOverlappingMetas`: the first run of blocks (sorted by minTime)
/// whose time ranges overlap.
pub fn select_overlapping(metas: &[BlockMeta]) -> Vec<BlockMeta> {
    if metas.len() < 2 {
        return Vec::new();
    }
    let mut out: Vec<BlockMeta> = Vec::new();
    let mut global_max = metas[0].max_time;
    for i in 1..metas.len() {
        let m = &metas[i];
        if m.min_time < global_max {
            if out.is_empty() {
                out.push(metas[i - 1].clone());
            }
            out.push(m.clone());
        } else if !out.is_empty() {
            break;
        }
        global_max = global_max.max(m.max_time);
    }
    out
}

/// Thanos's `splitByRange`: blocks grouped by aligned range `tr`; blocks that do
/// not fit one range are skipped.
pub fn split_by_range(metas: &[BlockMeta], tr: i64) -> Vec<Vec<BlockMeta>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < metas.len() {
        let m = &metas[i];
        let t0 = if m.min_time >= 0 {
            tr * (m.min_time / tr)
        } else {
            tr * ((m.min_time - tr + 1) / tr)
        };
        if m.max_time > t0 + tr {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while i < metas.len() {
            if metas[i].max_time > t0 + tr {
                break;
            }
            group.push(metas[i].clone());
            i += 1;
        }
        if !group.is_empty() {
            out.push(group);
        }
    }
    out
}

fn select_metas(ranges: &[i64], no_compact: &HashSet<Ulid>, metas: &[BlockMeta]) -> Vec<BlockMeta> {
    if ranges.len() < 2 || metas.is_empty() {
        return Vec::new();
    }
    let high_time = metas[metas.len() - 1].min_time;
    for &iv in &ranges[1..] {
        let parts = split_by_range(metas, iv);
        'outer: for p in parts {
            if p.iter().any(|m| m.compaction.failed) {
                continue 'outer;
            }
            if p.len() < 2 {
                continue;
            }
            let mint = p[0].min_time;
            let maxt = p[p.len() - 1].max_time;
            if maxt - mint != iv && maxt > high_time {
                continue;
            }
            let mut last_excluded = 0;
            for (i, m) in p.iter().enumerate() {
                if !no_compact.contains(&m.ulid) {
                    continue;
                }
                if i - last_excluded > 1 {
                    return p[last_excluded..i].to_vec();
                }
                last_excluded = i + 1;
            }
            if p.len() - last_excluded > 1 {
                return p[last_excluded..].to_vec();
            }
        }
    }
    Vec::new()
}

/// Thanos's default planner for one group (blocks sorted by minTime): overlapping
/// blocks first (vertical compaction), else the first range of `ranges[1..]` with
/// at least two blocks that is complete or older than the newest block (which is
/// held back), else a big block with more than 5% tombstones. Blocks in
/// `no_compact` are never selected.
pub fn plan(ranges: &[i64], metas: &[BlockMeta], no_compact: &HashSet<Ulid>) -> Vec<BlockMeta> {
    if metas.is_empty() {
        return Vec::new();
    }
    let not_excluded: Vec<BlockMeta> = metas
        .iter()
        .filter(|m| !no_compact.contains(&m.ulid))
        .cloned()
        .collect();
    let res = select_overlapping(&not_excluded);
    if !res.is_empty() {
        return res;
    }
    let mut by_min = metas.to_vec();
    if !no_compact.contains(&by_min[by_min.len() - 1].ulid) {
        by_min.pop();
    }
    let res = select_metas(ranges, no_compact, &by_min);
    if !res.is_empty() {
        return res;
    }
    if ranges.is_empty() {
        return Vec::new();
    }
    for m in not_excluded.iter().rev() {
        if m.max_time - m.min_time < ranges[ranges.len() / 2] {
            break;
        }
        if m.stats.num_tombstones as f64 / (m.stats.num_series + 1) as f64 > 0.05 {
            return vec![m.clone()];
        }
    }
    Vec::new()
}

/// Blocks to downsample (Thanos's rule): a raw block spanning at least 40h whose
/// sources are not all in some 5m block yet, and a 5m block spanning at least 10
/// days whose sources are not all in some 1h block. Returns (block, target res).
pub fn downsample_candidates(
    metas: &[BlockMeta],
    no_downsample: &HashSet<Ulid>,
) -> Vec<(BlockMeta, i64)> {
    let mut sources_5m = HashSet::new();
    let mut sources_1h = HashSet::new();
    for m in metas {
        match m.resolution() {
            RES_5M => sources_5m.extend(m.compaction.sources.iter().copied()),
            RES_1H => sources_1h.extend(m.compaction.sources.iter().copied()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for m in metas {
        if no_downsample.contains(&m.ulid) {
            continue;
        }
        let (done, range, target) = match m.resolution() {
            RES_RAW => (&sources_5m, DOWNSAMPLE_RANGE_5M, RES_5M),
            RES_5M => (&sources_1h, DOWNSAMPLE_RANGE_1H, RES_1H),
            _ => continue,
        };
        let missing = m.compaction.sources.iter().any(|s| !done.contains(s));
        if !missing || m.max_time - m.min_time < range {
            continue;
        }
        out.push((m.clone(), target));
    }
    out
}

/// Retention per resolution in ms; 0 keeps forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: i64,
    pub res_5m_ms: i64,
    pub res_1h_ms: i64,
}

impl Retention {
    pub fn for_resolution(&self, res: i64) -> i64 {
        match res {
            RES_RAW => self.raw_ms,
            RES_5M => self.res_5m_ms,
            RES_1H => self.res_1h_ms,
            _ => 0,
        }
    }
}

/// Blocks whose whole range is older than their resolution's retention at `now_ms`.
pub fn expired_blocks(metas: &[BlockMeta], retention: &Retention, now_ms: i64) -> Vec<Ulid> {
    metas
        .iter()
        .filter(|m| {
            let r = retention.for_resolution(m.resolution());
            r > 0 && now_ms > m.max_time.saturating_add(r)
        })
        .map(|m| m.ulid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::meta::ThanosMeta;

    const H: i64 = 3_600_000;

    fn meta(n: u128, min: i64, max: i64) -> BlockMeta {
        let mut m = BlockMeta::new(Ulid::from(n), min, max);
        m.thanos = Some(ThanosMeta::new(
            "sidecar",
            [("cluster".to_string(), "a".to_string())].into(),
        ));
        m
    }

    fn ids(v: &[BlockMeta]) -> Vec<u128> {
        v.iter().map(|m| u128::from(m.ulid)).collect()
    }

    #[test]
    fn plans_like_thanos() {
        let none = HashSet::new();
        // Four 2h blocks fill 0-8h; the newest one is held back, so 0-6h is
        // selected only once the range is complete.
        let m: Vec<_> = (0..4)
            .map(|i| meta(i + 1, i as i64 * 2 * H, (i as i64 + 1) * 2 * H))
            .collect();
        assert!(plan(&DEFAULT_RANGES, &m, &none).is_empty());
        let m5: Vec<_> = (0..5)
            .map(|i| meta(i + 1, i as i64 * 2 * H, (i as i64 + 1) * 2 * H))
            .collect();
        assert_eq!(ids(&plan(&DEFAULT_RANGES, &m5, &none)), vec![1, 2, 3, 4]);
        // One block: nothing.
        assert!(plan(&DEFAULT_RANGES, &m[..1], &none).is_empty());
        // Overlap wins.
        let o = vec![meta(1, 0, 2 * H), meta(2, H, 3 * H), meta(3, 4 * H, 6 * H)];
        assert_eq!(ids(&plan(&DEFAULT_RANGES, &o, &none)), vec![1, 2]);
        // No-compact marked blocks split the range.
        let nc: HashSet<Ulid> = [Ulid::from(2u128)].into();
        assert_eq!(ids(&plan(&DEFAULT_RANGES, &m5, &nc)), vec![3, 4]);
        assert!(select_overlapping(&[meta(1, 0, 2 * H), meta(2, 2 * H, 4 * H)]).is_empty());
    }

    #[test]
    fn split_ranges() {
        let m = vec![
            meta(1, 0, 10),
            meta(2, 10, 20),
            meta(3, 50, 60),
            meta(4, 90, 100),
        ];
        let s = split_by_range(&m, 30);
        assert_eq!(
            s.iter().map(|p| ids(p)).collect::<Vec<_>>(),
            vec![vec![1, 2], vec![3], vec![4]]
        );
        let m = vec![meta(1, 0, 40)];
        assert!(split_by_range(&m, 30).is_empty());
    }

    #[test]
    fn groups_by_stream_and_resolution() {
        let a = meta(1, 0, H);
        let mut b = meta(2, 0, H);
        b.thanos
            .as_mut()
            .unwrap()
            .labels
            .insert("replica".into(), "1".into());
        let mut c = meta(3, 0, H);
        c.thanos.as_mut().unwrap().downsample.resolution = RES_5M;
        let g = group_blocks(&[a.clone(), b.clone(), c.clone()], &[]);
        assert_eq!(g.len(), 3);
        let g = group_blocks(&[a, b, c], &["replica".to_string()]);
        assert_eq!(g.len(), 2);
        let k = GroupKey::of(&meta(1, 0, 1), &[]);
        assert!(k.to_string().starts_with("0@"));
    }

    #[test]
    fn covered_by_sources() {
        let a = meta(1, 0, H);
        let b = meta(2, H, 2 * H);
        let mut c = meta(3, 0, 2 * H);
        c.compaction.sources = vec![Ulid::from(1u128), Ulid::from(2u128)];
        c.compaction.level = 2;
        let cov = covered_blocks(&[a, b, c], &[]);
        assert_eq!(cov, [Ulid::from(1u128), Ulid::from(2u128)].into());
    }

    #[test]
    fn downsample_and_retention() {
        let mut raw = meta(1, 0, 48 * H);
        raw.compaction.level = 3;
        let short = meta(2, 48 * H, 50 * H);
        let c = downsample_candidates(&[raw.clone(), short.clone()], &HashSet::new());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1, RES_5M);
        let mut ds = meta(5, 0, 48 * H);
        ds.compaction.sources = vec![Ulid::from(1u128)];
        ds.thanos.as_mut().unwrap().downsample.resolution = RES_5M;
        assert!(downsample_candidates(&[raw.clone(), ds.clone()], &HashSet::new()).is_empty());
        let r = Retention {
            raw_ms: 10 * H,
            ..Default::default()
        };
        assert_eq!(
            expired_blocks(&[raw.clone(), ds.clone()], &r, 58 * H + 1),
            vec![Ulid::from(1u128)]
        );
        assert!(expired_blocks(&[raw, ds], &r, 58 * H).is_empty());
    }
}
