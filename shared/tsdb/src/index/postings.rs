//! Postings lists: decoding one list, and set operations over sorted series refs.

use std::ops::Range;

use crate::encoding::{crc32c, Decbuf};
use crate::{Error, Result};

/// Decodes one postings list section, `len(4) | #entries(4) | refs(4 each) | CRC32C`,
/// from `b`, which starts at the section and may extend past it (padding, the next
/// list). Refs must be strictly increasing.
pub fn decode_postings(b: &[u8]) -> Result<Vec<u64>> {
    const WHAT: &str = "index postings list";
    let content = section_content(b, WHAT)?;
    let mut d = Decbuf::new(content, WHAT);
    let n = d.be_u32()? as usize;
    if d.remaining() != n.saturating_mul(4) {
        return Err(Error::corrupt(
            WHAT,
            format!(
                "{} bytes of refs for {n} postings, want {}",
                d.remaining(),
                n.saturating_mul(4)
            ),
        ));
    }
    let mut out = Vec::with_capacity(n);
    let mut last: Option<u32> = None;
    for _ in 0..n {
        let r = d.be_u32()?;
        if last.is_some_and(|l| l >= r) {
            return Err(Error::corrupt(WHAT, "series refs not strictly increasing"));
        }
        last = Some(r);
        out.push(u64::from(r));
    }
    Ok(out)
}

/// The content of a section `len(4) | content(len) | CRC32C(content)` at the start of
/// `b`, checksum verified.
pub(crate) fn section_content<'a>(b: &'a [u8], what: &'static str) -> Result<&'a [u8]> {
    let mut d = Decbuf::new(b, what);
    let len = d.be_u32()? as usize;
    let content = d.bytes(len)?;
    let stored = d.be_u32()?;
    let computed = crc32c(content);
    if stored != computed {
        return Err(Error::Checksum {
            what: what.to_string(),
            stored,
            computed,
        });
    }
    Ok(content)
}

/// Union of sorted lists: sorted, deduplicated.
pub fn union(mut lists: Vec<Vec<u64>>) -> Vec<u64> {
    lists.retain(|l| !l.is_empty());
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().unwrap_or_default(),
        2 => {
            let (a, b) = (&lists[0], &lists[1]);
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() && j < b.len() {
                match a[i].cmp(&b[j]) {
                    std::cmp::Ordering::Less => {
                        out.push(a[i]);
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        out.push(b[j]);
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        out.push(a[i]);
                        i += 1;
                        j += 1;
                    }
                }
            }
            out.extend_from_slice(&a[i..]);
            out.extend_from_slice(&b[j..]);
            out
        }
        _ => {
            let mut out: Vec<u64> = lists.concat();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Intersection of two sorted lists. Gallops through the longer one when the sizes
/// differ a lot.
pub fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.is_empty() {
        return out;
    }
    if large.len() / small.len() >= 16 {
        let mut rest = large;
        for &x in small {
            match rest.binary_search(&x) {
                Ok(i) => {
                    out.push(x);
                    rest = &rest[i + 1..];
                }
                Err(i) => rest = &rest[i..],
            }
            if rest.is_empty() {
                break;
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` without the elements of `b` (both sorted).
pub fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

/// Groups byte ranges (any order) into fewer, larger reads: ranges whose gap is at
/// most `max_gap` bytes share one read. Returns the reads, sorted, and for each input
/// range the index of the read that covers it.
pub(crate) fn coalesce(ranges: &[Range<u64>], max_gap: u64) -> (Vec<Range<u64>>, Vec<usize>) {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    let mut reads: Vec<Range<u64>> = Vec::new();
    let mut which = vec![0usize; ranges.len()];
    for i in order {
        let r = &ranges[i];
        match reads.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(max_gap) => {
                last.end = last.end.max(r.end);
            }
            _ => reads.push(r.clone()),
        }
        which[i] = reads.len() - 1;
    }
    (reads, which)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn set() -> impl Strategy<Value = BTreeSet<u64>> {
        proptest::collection::btree_set(0u64..200, 0..60)
    }

    proptest! {
        #[test]
        fn set_ops_match_btreeset(a in set(), b in set(), c in set()) {
            let va: Vec<u64> = a.iter().copied().collect();
            let vb: Vec<u64> = b.iter().copied().collect();
            let vc: Vec<u64> = c.iter().copied().collect();
            let u: Vec<u64> = a.union(&b).copied().collect();
            prop_assert_eq!(union(vec![va.clone(), vb.clone()]), u);
            let u3: BTreeSet<u64> = a.iter().chain(&b).chain(&c).copied().collect();
            let u3: Vec<u64> = u3.into_iter().collect();
            prop_assert_eq!(union(vec![va.clone(), vb.clone(), vc]), u3);
            let i: Vec<u64> = a.intersection(&b).copied().collect();
            prop_assert_eq!(intersect(&va, &vb), i);
            let d: Vec<u64> = a.difference(&b).copied().collect();
            prop_assert_eq!(subtract(&va, &vb), d);
        }

        #[test]
        fn galloping_intersect(
            a in proptest::collection::btree_set(0u64..5000, 0..5),
            b in proptest::collection::btree_set(0u64..5000, 100..400),
        ) {
            let va: Vec<u64> = a.iter().copied().collect();
            let vb: Vec<u64> = b.iter().copied().collect();
            let i: Vec<u64> = a.intersection(&b).copied().collect();
            prop_assert_eq!(intersect(&va, &vb), i.clone());
            prop_assert_eq!(intersect(&vb, &va), i);
        }
    }

    #[test]
    fn coalesce_groups_near_ranges() {
        let (reads, which) = coalesce(&[100..110, 0..10, 12..20, 500..510], 5);
        assert_eq!(reads, vec![0..20, 100..110, 500..510]);
        assert_eq!(which, vec![1, 0, 0, 2]);
    }

    #[test]
    fn postings_decoding() {
        let mut e = crate::encoding::Encbuf::new();
        e.put_be_u32(12);
        e.put_be_u32(2);
        e.put_be_u32(1);
        e.put_be_u32(7);
        e.put_crc32_of(4);
        assert_eq!(decode_postings(&e.buf).unwrap(), vec![1, 7]);
        let mut bad = e.buf.clone();
        bad[11] ^= 1;
        assert!(matches!(decode_postings(&bad), Err(Error::Checksum { .. })));
        assert!(decode_postings(&e.buf[..10]).is_err());
    }
}
