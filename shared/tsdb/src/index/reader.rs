//! Queries over an index through range reads: label names and values, postings
//! (also for label matchers, with Prometheus's semantics) and series entries.

use std::ops::Range;
use std::sync::Arc;

use model::{Labels, MatchType, Matcher};

use super::header::read_exact_many;
use super::postings::{coalesce, decode_postings, intersect, subtract, union};
use super::{decode_series, series_entry_size, IndexHeader, SERIES_ALIGN};
use crate::{ChunkMeta, Error, RangeRead, Result};

/// Postings lists closer than this share one range read.
const POSTINGS_MAX_GAP: u64 = 64 << 10;
/// Series entries closer than this share one range read.
const SERIES_MAX_GAP: u64 = 16 << 10;
/// Bytes first read for a series entry; most entries are smaller. Longer entries
/// are read again in full.
const SERIES_PREFIX: u64 = 512;

/// Reads an index through its [`IndexHeader`] (in memory) and range reads of the
/// file for postings lists and series.
#[derive(Debug, Clone)]
pub struct IndexReader {
    header: Arc<IndexHeader>,
    file: Arc<dyn RangeRead>,
}

impl IndexReader {
    /// A reader over `file` whose header has already been read (or decoded from a
    /// cache). The header must belong to this file.
    pub fn new(header: Arc<IndexHeader>, file: Arc<dyn RangeRead>) -> Self {
        IndexReader { header, file }
    }

    /// Reads the header of the index in `file` and returns a reader over it.
    pub async fn open(file: Arc<dyn RangeRead>) -> Result<Self> {
        let header = IndexHeader::read(&*file).await?;
        Ok(IndexReader::new(Arc::new(header), file))
    }

    pub fn header(&self) -> &Arc<IndexHeader> {
        &self.header
    }

    pub fn file(&self) -> &Arc<dyn RangeRead> {
        &self.file
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.header.label_names().map(str::to_string).collect()
    }

    /// All values of label `name`, sorted; empty for an unknown name.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.header.label_values(name).map(str::to_string).collect()
    }

    /// The symbol with the given ordinal.
    pub fn symbol(&self, ordinal: u32) -> Result<&str> {
        self.header.symbol(ordinal).ok_or_else(|| {
            Error::invalid(
                "index symbol lookup",
                format!(
                    "ordinal {ordinal} beyond the {} symbols",
                    self.header.symbols().len()
                ),
            )
        })
    }

    /// Reads and decodes the postings lists in `ranges` (as the header gives them),
    /// coalescing nearby lists into single range reads.
    async fn read_lists(&self, ranges: &[Range<u64>]) -> Result<Vec<Vec<u64>>> {
        const WHAT: &str = "index postings";
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let (reads, which) = coalesce(ranges, POSTINGS_MAX_GAP);
        let bufs = read_exact_many(&*self.file, WHAT, &reads).await?;
        ranges
            .iter()
            .zip(which)
            .map(|(r, w)| {
                let from = (r.start - reads[w].start) as usize;
                let to = (r.end - reads[w].start) as usize;
                let b = bufs[w]
                    .get(from..to)
                    .ok_or_else(|| Error::corrupt(WHAT, "postings range outside read"))?;
                decode_postings(b)
            })
            .collect()
    }

    /// Refs of every series in the index (the all-postings list), sorted.
    pub async fn all_postings(&self) -> Result<Vec<u64>> {
        let Some(r) = self.header.all_postings_range() else {
            return Ok(Vec::new());
        };
        Ok(self.read_lists(&[r]).await?.pop().unwrap_or_default())
    }

    /// Refs of the series with label `name` set to any of `values`: sorted and
    /// deduplicated. Lists close together in the file are fetched with one read.
    pub async fn postings<V: AsRef<str>>(&self, name: &str, values: &[V]) -> Result<Vec<u64>> {
        let mut ranges: Vec<Range<u64>> = values
            .iter()
            .filter_map(|v| self.header.postings_range(name, v.as_ref()))
            .collect();
        ranges.sort_by_key(|r| r.start);
        ranges.dedup();
        Ok(union(self.read_lists(&ranges).await?))
    }

    /// Refs of the series selected by all `matchers`, sorted, with Prometheus's
    /// semantics (`PostingsForMatchers`): a missing label reads as the empty string,
    /// so `{a=""}` selects series without `a`, `{a!=""}` series with it and
    /// `{a=~".*"}` everything. No matchers select nothing.
    ///
    /// Matchers that do not match the empty string contribute the union of the
    /// postings of their matching values, and these are intersected; the others
    /// subtract the series whose value does not match; with no matcher of the first
    /// kind the start is the all-postings list. Equality and literal alternations
    /// (`a|b`) are looked up directly; other regexes test each value of the label.
    /// All lists needed are fetched in one batch of range reads.
    pub async fn postings_for_matchers(&self, matchers: &[Matcher]) -> Result<Vec<u64>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        let h = &*self.header;
        let direct = |name: &str, values: &[String]| -> Vec<Range<u64>> {
            let mut v: Vec<Range<u64>> = values
                .iter()
                .filter_map(|v| h.postings_range(name, v))
                .collect();
            v.sort_by_key(|r| r.start);
            v.dedup();
            v
        };
        let mut positive: Vec<Vec<Range<u64>>> = Vec::new();
        let mut negative: Vec<Vec<Range<u64>>> = Vec::new();
        for m in matchers {
            let name = m.name();
            if m.matches_empty() {
                // Selects series without the label too: subtract those whose value
                // does not match.
                let ranges = match m.kind() {
                    MatchType::NotEqual => direct(name, &[m.value().to_string()]),
                    MatchType::NotRegex => match literal_set(m) {
                        Some(set) => direct(name, &set),
                        None => h.matching_ranges(name, |v| !m.matches(v)),
                    },
                    _ => h.matching_ranges(name, |v| !m.matches(v)),
                };
                if !ranges.is_empty() {
                    negative.push(ranges);
                }
            } else {
                let ranges = match m.kind() {
                    MatchType::Equal => direct(name, &[m.value().to_string()]),
                    MatchType::Regex => match m.set_matches() {
                        Some(set) => direct(name, &set),
                        None => h.matching_ranges(name, |v| m.matches(v)),
                    },
                    _ => h.matching_ranges(name, |v| m.matches(v)),
                };
                if ranges.is_empty() {
                    return Ok(Vec::new());
                }
                positive.push(ranges);
            }
        }

        let mut all: Vec<Range<u64>> = Vec::new();
        let mut groups: Vec<(bool, usize)> = Vec::new();
        if positive.is_empty() {
            match h.all_postings_range() {
                Some(r) => {
                    all.push(r);
                    groups.push((true, 1));
                }
                None => return Ok(Vec::new()),
            }
        }
        for g in &positive {
            all.extend_from_slice(g);
            groups.push((true, g.len()));
        }
        for g in &negative {
            all.extend_from_slice(g);
            groups.push((false, g.len()));
        }
        let mut lists = self.read_lists(&all).await?.into_iter();

        let mut pos_sets = Vec::new();
        let mut neg_sets = Vec::new();
        for (is_pos, n) in groups {
            let set = union(lists.by_ref().take(n).collect());
            if is_pos {
                pos_sets.push(set);
            } else {
                neg_sets.push(set);
            }
        }
        pos_sets.sort_by_key(Vec::len);
        let mut sets = pos_sets.into_iter();
        let mut acc = sets.next().unwrap_or_default();
        for s in sets {
            if acc.is_empty() {
                break;
            }
            acc = intersect(&acc, &s);
        }
        for s in neg_sets {
            if acc.is_empty() {
                break;
            }
            acc = subtract(&acc, &s);
        }
        Ok(acc)
    }

    /// The labels and chunk metas of the series with ref `series_ref`.
    pub async fn series(&self, series_ref: u64) -> Result<(Labels, Vec<ChunkMeta>)> {
        self.series_many(&[series_ref])
            .await?
            .pop()
            .ok_or_else(|| Error::corrupt("index series entry", "no entry decoded"))
    }

    /// The labels and chunk metas of each series in `refs`, in the same order.
    /// Entries near each other are fetched with one range read; each entry is first
    /// read as a bounded prefix and again in full only if it is longer.
    pub async fn series_many(&self, refs: &[u64]) -> Result<Vec<(Labels, Vec<ChunkMeta>)>> {
        const WHAT: &str = "index series";
        let section = self.header.series_section();
        let mut ranges = Vec::with_capacity(refs.len());
        for &r in refs {
            let off = r
                .checked_mul(SERIES_ALIGN)
                .filter(|o| section.contains(o))
                .ok_or_else(|| {
                    Error::corrupt(
                        WHAT,
                        format!(
                            "series ref {r} outside the series section {}..{}",
                            section.start, section.end
                        ),
                    )
                })?;
            ranges.push(off..off.saturating_add(SERIES_PREFIX).min(section.end));
        }
        let (reads, which) = coalesce(&ranges, SERIES_MAX_GAP);
        let bufs = read_exact_many(&*self.file, WHAT, &reads).await?;

        let symbols = self.header.symbols();
        let mut out: Vec<Option<(Labels, Vec<ChunkMeta>)>> = Vec::with_capacity(refs.len());
        let mut longer: Vec<(usize, Range<u64>)> = Vec::new();
        for (i, (r, &w)) in ranges.iter().zip(&which).enumerate() {
            // Everything read from the entry's start on: neighbours' reads may
            // already hold all of a long entry.
            let b = bufs[w]
                .get((r.start - reads[w].start) as usize..)
                .unwrap_or_default();
            let size = series_entry_size(b)?;
            if size <= b.len() as u64 {
                out.push(Some(decode_series(b, symbols)?));
            } else {
                if r.start.saturating_add(size) > section.end {
                    return Err(Error::corrupt(
                        WHAT,
                        format!(
                            "entry at {} of {size} bytes runs past the series section",
                            r.start
                        ),
                    ));
                }
                longer.push((i, r.start..r.start + size));
                out.push(None);
            }
        }
        if !longer.is_empty() {
            let ranges: Vec<Range<u64>> = longer.iter().map(|(_, r)| r.clone()).collect();
            let (reads, which) = coalesce(&ranges, SERIES_MAX_GAP);
            let bufs = read_exact_many(&*self.file, WHAT, &reads).await?;
            for ((i, r), w) in longer.into_iter().zip(which) {
                let b = bufs[w]
                    .get((r.start - reads[w].start) as usize..)
                    .unwrap_or_default();
                out[i] = Some(decode_series(b, symbols)?);
            }
        }
        out.into_iter()
            .map(|s| s.ok_or_else(|| Error::corrupt(WHAT, "entry not decoded")))
            .collect()
    }
}

/// The literal alternatives of a `!~` matcher's pattern (what its inverse `=~`
/// matcher's [`Matcher::set_matches`] gives).
fn literal_set(m: &Matcher) -> Option<Vec<String>> {
    Matcher::new(MatchType::Regex, m.name(), m.value())
        .ok()?
        .set_matches()
}
