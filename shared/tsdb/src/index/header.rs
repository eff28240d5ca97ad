//! The in-memory part of an index needed to plan lookups, and its cached encoding.

use std::ops::{Bound, Range};

use bytes::Bytes;

use super::postings::section_content;
use super::{Symbols, Toc, FORMAT_V2, FORMAT_V3, HEADER_LEN, MAGIC};
use crate::encoding::{crc32c, Decbuf, Encbuf};
use crate::{Error, RangeRead, Result};

const WHAT_TABLE: &str = "index postings offset table";
const WHAT_SYMBOLS: &str = "index symbol table";
const WHAT_CACHED: &str = "cached index header";

/// Magic of our own header encoding ([`IndexHeader::encode`]).
const CACHED_MAGIC: &[u8; 4] = b"AEIH";
/// Version of our own header encoding.
const CACHED_VERSION: u8 = 1;
/// The smallest possible postings list: `len | #entries | CRC`.
const MIN_POSTINGS_LEN: u64 = 12;

/// What a lookup needs to know about an index, fully in memory: the TOC, the symbol
/// table and the postings offset table (where the postings list of every
/// `(name, value)` pair lives), plus the file's size and format version.
///
/// Label names and values are kept as symbol ordinals; the postings entries of one
/// name are sorted by value, so value ranges can be binary-searched.
#[derive(Clone, PartialEq, Eq)]
pub struct IndexHeader {
    version: u8,
    file_size: u64,
    toc: Toc,
    symbols: Symbols,
    /// Symbol ordinals of the label names, ascending (so sorted by name).
    names: Vec<u32>,
    /// Entries of `names[i]` are `name_starts[i]..name_starts[i + 1]`.
    name_starts: Vec<u32>,
    /// Per entry: the value's symbol ordinal (entry 0, the all-postings list, has
    /// `u32::MAX`).
    values: Vec<u32>,
    /// Per entry: offset of its postings list in the index.
    starts: Vec<u64>,
    /// Per entry: end of its postings list's byte range, only when the lists are not
    /// in table order in the file (otherwise the next entry's start is the end).
    ends: Option<Vec<u64>>,
    /// End of the last postings list's byte range.
    postings_end: u64,
}

impl std::fmt::Debug for IndexHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexHeader")
            .field("version", &self.version)
            .field("file_size", &self.file_size)
            .field("toc", &self.toc)
            .field("symbols", &self.symbols)
            .field("label_names", &self.names.len())
            .field("postings_lists", &self.starts.len())
            .finish()
    }
}

/// Collects postings offset table entries, checking their order.
struct TableBuilder {
    num_symbols: usize,
    names: Vec<u32>,
    name_starts: Vec<u32>,
    values: Vec<u32>,
    starts: Vec<u64>,
}

impl TableBuilder {
    fn new(num_symbols: usize, capacity: usize) -> Self {
        TableBuilder {
            num_symbols,
            names: Vec::new(),
            name_starts: Vec::new(),
            values: Vec::with_capacity(capacity),
            starts: Vec::with_capacity(capacity),
        }
    }

    fn all_postings(&mut self, start: u64) {
        self.values.push(u32::MAX);
        self.starts.push(start);
    }

    fn push(&mut self, what: &'static str, name: u32, value: u32, start: u64) -> Result<()> {
        if self.starts.is_empty() {
            return Err(Error::corrupt(
                what,
                "the first entry is not the all-postings list",
            ));
        }
        if name as usize >= self.num_symbols || value as usize >= self.num_symbols {
            return Err(Error::corrupt(what, "symbol ordinal out of range"));
        }
        match self.names.last() {
            Some(&n) if n == name => {
                if self.values.last().is_some_and(|&v| v >= value) {
                    return Err(Error::corrupt(what, "label values not sorted and unique"));
                }
            }
            Some(&n) if n > name => {
                return Err(Error::corrupt(what, "label names not sorted"));
            }
            _ => {
                self.names.push(name);
                self.name_starts.push(self.starts.len() as u32);
            }
        }
        if self.starts.len() >= u32::MAX as usize {
            return Err(Error::corrupt(what, "more than 2^32-1 entries"));
        }
        self.values.push(value);
        self.starts.push(start);
        Ok(())
    }

    fn finish(
        mut self,
        what: &'static str,
        version: u8,
        file_size: u64,
        toc: Toc,
        symbols: Symbols,
    ) -> Result<IndexHeader> {
        if version != FORMAT_V2 && version != FORMAT_V3 {
            return Err(Error::Unsupported {
                what: "index format version".into(),
                detail: format!("{version} (only 2 and 3 are read)"),
            });
        }
        let toc_start = file_size
            .checked_sub(Toc::LEN)
            .filter(|&t| t >= HEADER_LEN)
            .ok_or_else(|| Error::corrupt(what, format!("file size {file_size} too small")))?;
        self.name_starts.push(self.starts.len() as u32);
        let max_start = self.starts.iter().copied().max().unwrap_or(0);
        let postings_end = [toc.label_indices_table, toc.postings_table, toc_start]
            .into_iter()
            .filter(|&o| o > max_start && o <= toc_start)
            .min()
            .ok_or_else(|| {
                Error::corrupt(what, format!("postings list at {max_start} past the TOC"))
            })?;
        let ends = compute_ends(what, &self.starts, postings_end)?;
        self.values.shrink_to_fit();
        self.starts.shrink_to_fit();
        Ok(IndexHeader {
            version,
            file_size,
            toc,
            symbols,
            names: self.names,
            name_starts: self.name_starts,
            values: self.values,
            starts: self.starts,
            ends,
            postings_end,
        })
    }
}

/// Ends of the postings lists' byte ranges: each list runs to the next list's start.
/// `None` when the lists are in table order in the file (the common case).
fn compute_ends(what: &'static str, starts: &[u64], postings_end: u64) -> Result<Option<Vec<u64>>> {
    let check = |start: u64, end: u64| {
        if start.saturating_add(MIN_POSTINGS_LEN) > end {
            return Err(Error::corrupt(
                what,
                format!("postings list at {start} overlaps the next section at {end}"),
            ));
        }
        Ok(())
    };
    if starts.windows(2).all(|w| w[0] < w[1]) {
        for (i, &s) in starts.iter().enumerate() {
            check(s, starts.get(i + 1).copied().unwrap_or(postings_end))?;
        }
        return Ok(None);
    }
    let mut order: Vec<usize> = (0..starts.len()).collect();
    order.sort_unstable_by_key(|&i| starts[i]);
    let mut ends = vec![0u64; starts.len()];
    for (k, &i) in order.iter().enumerate() {
        let end = order.get(k + 1).map(|&j| starts[j]).unwrap_or(postings_end);
        check(starts[i], end)?;
        ends[i] = end;
    }
    Ok(Some(ends))
}

fn parse_symbols(content: &[u8]) -> Result<Symbols> {
    let mut d = Decbuf::new(content, WHAT_SYMBOLS);
    let n = d.be_u32()? as usize;
    if n > d.remaining() {
        return Err(Error::corrupt(
            WHAT_SYMBOLS,
            format!("{n} symbols in {} bytes", d.remaining()),
        ));
    }
    let mut symbols = Symbols::with_capacity(n, d.remaining());
    for _ in 0..n {
        symbols.push(d.uvarint_bytes()?, WHAT_SYMBOLS, false)?;
    }
    if d.remaining() != 0 {
        return Err(Error::corrupt(
            WHAT_SYMBOLS,
            format!("{} bytes after the last symbol", d.remaining()),
        ));
    }
    symbols.shrink_to_fit();
    Ok(symbols)
}

fn parse_postings_table(
    content: &[u8],
    builder: &mut TableBuilder,
    symbols: &Symbols,
) -> Result<()> {
    let mut d = Decbuf::new(content, WHAT_TABLE);
    let n = d.be_u32()?;
    if n as usize > d.remaining() {
        return Err(Error::corrupt(
            WHAT_TABLE,
            format!("{n} entries in {} bytes", d.remaining()),
        ));
    }
    let mut last: Option<(&[u8], u32, u32)> = None; // name, its ordinal, last value ordinal
    for i in 0..n {
        let keys = d.uvarint()?;
        if keys != 2 {
            return Err(Error::corrupt(
                WHAT_TABLE,
                format!("entry with {keys} keys, want 2"),
            ));
        }
        let name = d.uvarint_bytes()?;
        let value = d.uvarint_bytes()?;
        let start = d.uvarint()?;
        if i == 0 {
            if !name.is_empty() || !value.is_empty() {
                return Err(Error::corrupt(
                    WHAT_TABLE,
                    "the first entry is not the all-postings list",
                ));
            }
            builder.all_postings(start);
            continue;
        }
        if name.is_empty() {
            return Err(Error::corrupt(WHAT_TABLE, "entry with an empty label name"));
        }
        let (name_ord, from) = match last {
            Some((n, o, v)) if n == name => (o, v.saturating_add(1)),
            _ => (
                symbols.find_bytes_from(name, 0).ok_or_else(|| {
                    Error::corrupt(
                        WHAT_TABLE,
                        format!(
                            "label name {:?} not in the symbol table",
                            String::from_utf8_lossy(name)
                        ),
                    )
                })?,
                0,
            ),
        };
        let value_ord = symbols.find_bytes_from(value, from).ok_or_else(|| {
            Error::corrupt(
                WHAT_TABLE,
                format!(
                    "label value {:?} not in the symbol table or out of order",
                    String::from_utf8_lossy(value)
                ),
            )
        })?;
        builder.push(WHAT_TABLE, name_ord, value_ord, start)?;
        last = Some((name, name_ord, value_ord));
    }
    if d.remaining() != 0 {
        return Err(Error::corrupt(
            WHAT_TABLE,
            format!("{} bytes after the last entry", d.remaining()),
        ));
    }
    Ok(())
}

/// Reads sections `len(4) | content | CRC32C` at the given offsets and returns their
/// verified contents. Each section is first read up to its hinted end (one round
/// trip for all); sections longer than that are read again in full.
async fn read_sections(
    file: &dyn RangeRead,
    what: &'static str,
    specs: &[(u64, u64)],
    limit: u64,
) -> Result<Vec<Bytes>> {
    let mut ranges = Vec::with_capacity(specs.len());
    for &(off, hint) in specs {
        if off < HEADER_LEN || off > limit.saturating_sub(8) {
            return Err(Error::corrupt(
                what,
                format!("section offset {off} outside the file body (..{limit})"),
            ));
        }
        ranges.push(off..hint.clamp(off + 8, limit));
    }
    let mut bufs = read_exact_many(file, what, &ranges).await?;
    let mut again = Vec::new();
    let mut again_idx = Vec::new();
    for (i, b) in bufs.iter().enumerate() {
        let len = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let need = 8 + len;
        if need > b.len() as u64 {
            let off = ranges[i].start;
            if off.saturating_add(need) > limit {
                return Err(Error::corrupt(
                    what,
                    format!("section at {off} of {len} bytes runs past {limit}"),
                ));
            }
            again.push(off..off + need);
            again_idx.push(i);
        }
    }
    if !again.is_empty() {
        let more = read_exact_many(file, what, &again).await?;
        for (i, b) in again_idx.into_iter().zip(more) {
            bufs[i] = b;
        }
    }
    bufs.into_iter()
        .map(|b| {
            let content = section_content(&b, what)?;
            Ok(b.slice(4..4 + content.len()))
        })
        .collect()
}

/// `read_many`, checking that every range came back whole.
pub(crate) async fn read_exact_many(
    file: &dyn RangeRead,
    what: &'static str,
    ranges: &[Range<u64>],
) -> Result<Vec<Bytes>> {
    let bufs = file.read_many(ranges).await?;
    if bufs.len() != ranges.len()
        || bufs
            .iter()
            .zip(ranges)
            .any(|(b, r)| b.len() as u64 != r.end - r.start)
    {
        return Err(Error::corrupt(what, "short read"));
    }
    Ok(bufs)
}

impl IndexHeader {
    /// Reads the header of the index in `file` with a few range reads: magic and
    /// version, the TOC, the symbol table and the postings offset table (never the
    /// series or postings).
    pub async fn read(file: &dyn RangeRead) -> Result<IndexHeader> {
        const WHAT: &str = "index";
        let size = file.size().await?;
        if size < HEADER_LEN + Toc::LEN {
            return Err(Error::corrupt(
                WHAT,
                format!("{size} bytes is too short for an index"),
            ));
        }
        let toc_start = size - Toc::LEN;
        let parts = read_exact_many(file, WHAT, &[0..HEADER_LEN, toc_start..size]).await?;
        let mut d = Decbuf::new(&parts[0], WHAT);
        let magic = d.be_u32()?;
        if magic != MAGIC {
            return Err(Error::corrupt(WHAT, format!("bad magic {magic:#010x}")));
        }
        let version = d.byte()?;
        if version != FORMAT_V2 && version != FORMAT_V3 {
            return Err(Error::Unsupported {
                what: "index format version".into(),
                detail: format!("{version} (only 2 and 3 are read)"),
            });
        }
        let toc = Toc::decode(&parts[1])?;

        // The series section follows the symbol table, and the TOC the postings
        // offset table, so both usually come whole in the first read.
        let mut specs = Vec::new();
        if toc.symbols != 0 {
            let hint = if toc.series > toc.symbols {
                toc.series
            } else {
                toc.symbols
            };
            specs.push((toc.symbols, hint));
        }
        if toc.postings_table != 0 {
            specs.push((toc.postings_table, toc_start));
        }
        let sections = read_sections(file, WHAT, &specs, toc_start).await?;
        let mut sections = sections.into_iter();
        let symbols = match toc.symbols {
            0 => Symbols::default(),
            _ => parse_symbols(&sections.next().unwrap_or_default())?,
        };
        let mut builder = TableBuilder::new(symbols.len(), 0);
        if toc.postings_table != 0 {
            let table = sections.next().unwrap_or_default();
            parse_postings_table(&table, &mut builder, &symbols)?;
        }
        builder.finish(WHAT_TABLE, version, size, toc, symbols)
    }

    /// Format version of the index file (2 or 3).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Size of the index file in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// The symbol with the given ordinal.
    pub fn symbol(&self, ordinal: u32) -> Option<&str> {
        self.symbols.get(ordinal)
    }

    /// Byte range of the series section; series refs times 16 fall inside it.
    pub fn series_section(&self) -> Range<u64> {
        self.toc.series..self.toc.series_end(self.file_size)
    }

    /// Approximate heap memory held.
    pub fn heap_size(&self) -> usize {
        self.symbols.heap_size()
            + (self.names.capacity() + self.name_starts.capacity() + self.values.capacity()) * 4
            + self.starts.capacity() * 8
            + self.ends.as_ref().map_or(0, |e| e.capacity() * 8)
    }

    /// Label names, sorted (without the all-postings list's empty name).
    pub fn label_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names
            .iter()
            .map(|&n| self.symbols.get(n).unwrap_or_default())
    }

    /// Entries of `name` in the entry arrays.
    fn entries(&self, name: &str) -> Range<usize> {
        let Some(ord) = self.symbols.find(name) else {
            return 0..0;
        };
        match self.names.binary_search(&ord) {
            Ok(i) => self.name_starts[i] as usize..self.name_starts[i + 1] as usize,
            Err(_) => 0..0,
        }
    }

    fn entry_value(&self, e: usize) -> &str {
        self.symbols.get(self.values[e]).unwrap_or_default()
    }

    /// Byte range of entry `e`'s postings list (the list plus any padding after it).
    fn entry_range(&self, e: usize) -> Range<u64> {
        let end = match &self.ends {
            Some(ends) => ends[e],
            None => self.starts.get(e + 1).copied().unwrap_or(self.postings_end),
        };
        self.starts[e]..end
    }

    /// Values of label `name`, sorted; empty for an unknown name.
    pub fn label_values(&self, name: &str) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries(name).map(|e| self.entry_value(e))
    }

    /// Values of `name` within the given bounds with the byte ranges of their
    /// postings lists, in value order (found by binary search).
    pub fn value_postings<'a>(
        &'a self,
        name: &str,
        lo: Bound<&str>,
        hi: Bound<&str>,
    ) -> impl Iterator<Item = (&'a str, Range<u64>)> + 'a {
        let r = self.entries(name);
        let vals = &self.values[r.clone()];
        let sym = |v: u32| self.symbols.get(v).unwrap_or_default();
        let first = match lo {
            Bound::Unbounded => 0,
            Bound::Included(x) => vals.partition_point(|&v| sym(v) < x),
            Bound::Excluded(x) => vals.partition_point(|&v| sym(v) <= x),
        };
        let last = match hi {
            Bound::Unbounded => vals.len(),
            Bound::Included(x) => vals.partition_point(|&v| sym(v) <= x),
            Bound::Excluded(x) => vals.partition_point(|&v| sym(v) < x),
        };
        let (a, b) = (r.start + first, r.start + last.max(first));
        (a..b).map(move |e| (self.entry_value(e), self.entry_range(e)))
    }

    /// Byte range of the postings list of `name="value"`.
    pub fn postings_range(&self, name: &str, value: &str) -> Option<Range<u64>> {
        let r = self.entries(name);
        let ord = self.symbols.find(value)?;
        let i = self.values[r.clone()].binary_search(&ord).ok()?;
        Some(self.entry_range(r.start + i))
    }

    /// Byte range of the all-postings list (every series), if the index has one.
    pub fn all_postings_range(&self) -> Option<Range<u64>> {
        (!self.starts.is_empty()).then(|| self.entry_range(0))
    }

    /// Byte ranges of the postings lists of the values of `name` for which `keep`
    /// returns true.
    pub(crate) fn matching_ranges(
        &self,
        name: &str,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Vec<Range<u64>> {
        self.entries(name)
            .filter(|&e| keep(self.entry_value(e)))
            .map(|e| self.entry_range(e))
            .collect()
    }

    /// Encodes the header in our own compact, versioned, CRC-protected format, to be
    /// cached (for example next to the block in object storage).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encbuf::new();
        e.put_bytes(CACHED_MAGIC);
        e.put_byte(CACHED_VERSION);
        e.put_byte(self.version);
        e.put_uvarint(self.file_size);
        let t = &self.toc;
        for v in [
            t.symbols,
            t.series,
            t.label_indices,
            t.label_indices_table,
            t.postings,
            t.postings_table,
        ] {
            e.put_uvarint(v);
        }
        e.put_uvarint(self.symbols.len() as u64);
        for s in self.symbols.iter() {
            e.put_uvarint_str(s);
        }
        let mut prev_start = 0u64;
        let mut put_start = |e: &mut Encbuf, s: u64| {
            e.put_varint(s.wrapping_sub(prev_start) as i64);
            prev_start = s;
        };
        match self.starts.first() {
            Some(&s) => {
                e.put_byte(1);
                put_start(&mut e, s);
            }
            None => e.put_byte(0),
        }
        e.put_uvarint(self.names.len() as u64);
        let mut prev_name = 0u32;
        for (i, &name) in self.names.iter().enumerate() {
            e.put_uvarint(u64::from(name - if i == 0 { 0 } else { prev_name }));
            prev_name = name;
            let r = self.name_starts[i] as usize..self.name_starts[i + 1] as usize;
            e.put_uvarint(r.len() as u64);
            let mut prev_value = 0u32;
            for (k, ent) in r.enumerate() {
                let v = self.values[ent];
                e.put_uvarint(u64::from(v - if k == 0 { 0 } else { prev_value }));
                prev_value = v;
                put_start(&mut e, self.starts[ent]);
            }
        }
        e.put_crc32_of(0);
        e.buf
    }

    /// Decodes [`IndexHeader::encode`]'s output. Corrupt or truncated input is an
    /// error, never a panic.
    pub fn decode(b: &[u8]) -> Result<IndexHeader> {
        const W: &str = WHAT_CACHED;
        if b.len() < CACHED_MAGIC.len() + 2 + 4 {
            return Err(Error::corrupt(W, format!("{} bytes is too short", b.len())));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if &body[..4] != CACHED_MAGIC {
            return Err(Error::corrupt(W, "bad magic"));
        }
        if body[4] != CACHED_VERSION {
            return Err(Error::Unsupported {
                what: W.into(),
                detail: format!("encoding version {}", body[4]),
            });
        }
        let computed = crc32c(body);
        if stored != computed {
            return Err(Error::Checksum {
                what: W.into(),
                stored,
                computed,
            });
        }
        let mut d = Decbuf::new(&body[5..], W);
        let version = d.byte()?;
        let file_size = d.uvarint()?;
        let toc = Toc {
            symbols: d.uvarint()?,
            series: d.uvarint()?,
            label_indices: d.uvarint()?,
            label_indices_table: d.uvarint()?,
            postings: d.uvarint()?,
            postings_table: d.uvarint()?,
        };
        let nsym = d.uvarint_len()?;
        let mut symbols = Symbols::with_capacity(nsym, d.remaining());
        for _ in 0..nsym {
            symbols.push(d.uvarint_bytes()?, W, false)?;
        }
        symbols.shrink_to_fit();

        let mut builder = TableBuilder::new(symbols.len(), 0);
        let mut prev_start = 0u64;
        let mut next_start = |d: &mut Decbuf<'_>| -> Result<u64> {
            prev_start = prev_start.wrapping_add(d.varint()? as u64);
            Ok(prev_start)
        };
        match d.byte()? {
            0 => {}
            1 => builder.all_postings(next_start(&mut d)?),
            x => return Err(Error::corrupt(W, format!("bad all-postings flag {x}"))),
        }
        let nnames = d.uvarint_len()?;
        let mut name = 0u32;
        for i in 0..nnames {
            let delta = d.uvarint32()?;
            if i > 0 && delta == 0 {
                return Err(Error::corrupt(W, "label names not sorted"));
            }
            name = name
                .checked_add(delta)
                .ok_or_else(|| Error::corrupt(W, "name ordinal overflows"))?;
            let nvalues = d.uvarint_len()?;
            if nvalues == 0 {
                return Err(Error::corrupt(W, "label name without values"));
            }
            let mut value = 0u32;
            for k in 0..nvalues {
                let delta = d.uvarint32()?;
                if k > 0 && delta == 0 {
                    return Err(Error::corrupt(W, "label values not sorted"));
                }
                value = value
                    .checked_add(delta)
                    .ok_or_else(|| Error::corrupt(W, "value ordinal overflows"))?;
                let start = next_start(&mut d)?;
                builder.push(W, name, value, start)?;
            }
        }
        if d.remaining() != 0 {
            return Err(Error::corrupt(
                W,
                format!("{} trailing bytes", d.remaining()),
            ));
        }
        builder.finish(W, version, file_size, toc, symbols)
    }
}
