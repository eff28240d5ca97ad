//! The histogram chunk of integer native histograms (Prometheus's
//! `HistogramChunk`), and the bucket layout it shares with float histogram chunks.
//!
//! Layout: 2-byte big-endian sample count, 1 flags byte (top 2 bits: counter reset
//! header), then a bit stream. The first sample carries the layout (zero threshold,
//! schema, positive and negative spans, custom bounds for schema -53) followed by
//! its timestamp, count, zero count (varbit), sum (64 bits) and bucket deltas
//! (varbit). Later samples store delta-of-deltas (varbit) of timestamp, count, zero
//! count and each bucket, and the sum XOR-encoded. A stale sample (sum is the
//! staleness NaN) after the first stores no buckets.

use model::{CounterResetHint, Histogram, Span, STALE_NAN_BITS};

use super::bstream::{
    put_varbit_int, put_varbit_uint, read_varbit_int, read_varbit_uint, xor_read, xor_write,
    BitReader, BitWriter, XorError,
};
use super::CounterResetHeader;
use crate::{Error, Result};

const WHAT: &str = "histogram chunk";

/// Bytes before the bit stream: count (2) and flags (1).
pub(crate) const HISTOGRAM_HEADER_SIZE: usize = 3;

/// The bucket layout of all histograms in a chunk, written once with the first.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Layout {
    pub(crate) schema: i32,
    pub(crate) zero_threshold: f64,
    pub(crate) positive_spans: Vec<Span>,
    pub(crate) negative_spans: Vec<Span>,
    pub(crate) custom_values: Vec<f64>,
}

impl Layout {
    /// Buckets the spans describe (positive, negative).
    pub(crate) fn bucket_counts(&self) -> (u64, u64) {
        (
            span_buckets(&self.positive_spans),
            span_buckets(&self.negative_spans),
        )
    }

    /// Whether another histogram's layout equals this one (Go compares the zero
    /// threshold with `!=`, so NaN thresholds never match).
    pub(crate) fn matches(
        &self,
        schema: i32,
        zero_threshold: f64,
        positive: &[Span],
        negative: &[Span],
        custom: &[f64],
    ) -> bool {
        self.schema == schema
            && self.zero_threshold == zero_threshold
            && self.positive_spans == positive
            && self.negative_spans == negative
            && (schema != Histogram::CUSTOM_BUCKETS_SCHEMA
                || self.custom_values.len() == custom.len()
                    && self
                        .custom_values
                        .iter()
                        .zip(custom)
                        .all(|(a, b)| a.to_bits() == b.to_bits()))
    }

    /// Go's `writeHistogramChunkLayout`.
    pub(crate) fn write(&self, w: &mut BitWriter) {
        put_zero_threshold(w, self.zero_threshold);
        put_varbit_int(w, i64::from(self.schema));
        put_spans(w, &self.positive_spans);
        put_spans(w, &self.negative_spans);
        if self.schema == Histogram::CUSTOM_BUCKETS_SCHEMA {
            put_varbit_uint(w, self.custom_values.len() as u64);
            for v in &self.custom_values {
                put_custom_bound(w, *v);
            }
        }
    }

    /// Go's `readHistogramChunkLayout` plus its schema check. Counts are checked
    /// against the bits left, so hostile data cannot make it allocate much.
    pub(crate) fn read(r: &mut BitReader<'_>, what: &'static str) -> Result<Layout> {
        let eof = || Error::corrupt(what, "truncated layout");
        let zero_threshold = read_zero_threshold(r).ok_or_else(eof)?;
        let schema = read_varbit_int(r).ok_or_else(eof)?;
        let schema = i32::try_from(schema)
            .map_err(|_| Error::corrupt(what, format!("schema {schema} out of range")))?;
        let positive_spans = read_spans(r, what)?;
        let negative_spans = read_spans(r, what)?;
        let mut custom_values = Vec::new();
        if schema == Histogram::CUSTOM_BUCKETS_SCHEMA {
            let n = read_varbit_uint(r).ok_or_else(eof)?;
            // Each bound takes at least 5 bits.
            if n > r.remaining_bits() / 5 {
                return Err(Error::corrupt(
                    what,
                    format!("{n} custom bounds do not fit"),
                ));
            }
            for _ in 0..n {
                custom_values.push(read_custom_bound(r).ok_or_else(eof)?);
            }
        }
        if !Histogram::is_known_schema(schema) {
            return Err(Error::Unsupported {
                what: "histogram schema".into(),
                detail: format!("{schema} (known: -53 and -9..=52)"),
            });
        }
        let layout = Layout {
            schema,
            zero_threshold,
            positive_spans,
            negative_spans,
            custom_values,
        };
        // Every bucket of the first sample takes at least 1 bit.
        let (p, n) = layout.bucket_counts();
        if p.saturating_add(n) > r.remaining_bits() {
            return Err(Error::corrupt(
                what,
                format!("layout has {p} + {n} buckets, more than the data can hold"),
            ));
        }
        Ok(layout)
    }
}

fn span_buckets(spans: &[Span]) -> u64 {
    spans.iter().map(|s| u64::from(s.length)).sum()
}

fn put_spans(w: &mut BitWriter, spans: &[Span]) {
    put_varbit_uint(w, spans.len() as u64);
    for s in spans {
        put_varbit_uint(w, u64::from(s.length));
        put_varbit_int(w, i64::from(s.offset));
    }
}

fn read_spans(r: &mut BitReader<'_>, what: &'static str) -> Result<Vec<Span>> {
    let eof = || Error::corrupt(what, "truncated span");
    let n = read_varbit_uint(r).ok_or_else(eof)?;
    // Each span takes at least 2 bits.
    if n > r.remaining_bits() / 2 {
        return Err(Error::corrupt(what, format!("{n} spans do not fit")));
    }
    // Vectors grow with what is actually decoded, not with the announced count.
    let mut spans = Vec::new();
    for _ in 0..n {
        let length = read_varbit_uint(r).ok_or_else(eof)?;
        let offset = read_varbit_int(r).ok_or_else(eof)?;
        let (Ok(length), Ok(offset)) = (u32::try_from(length), i32::try_from(offset)) else {
            return Err(Error::corrupt(
                what,
                format!("span (offset {offset}, length {length}) out of range"),
            ));
        };
        spans.push(Span { offset, length });
    }
    Ok(spans)
}

/// Go's `putZeroThreshold`: 0 as a zero byte; a power of two 2^-243..=2^10 as one
/// byte (IEEE exponent + 243); anything else as 255 and the 64 bits.
fn put_zero_threshold(w: &mut BitWriter, threshold: f64) {
    if threshold == 0.0 {
        w.write_bits(0, 8);
        return;
    }
    let bits = threshold.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let is_pow2 = threshold > 0.0 && bits & ((1u64 << 52) - 1) == 0 && (1..2047).contains(&biased);
    // Go's math.Frexp exponent: threshold = 0.5 * 2^exp.
    let exp = biased - 1022;
    if is_pow2 && (-242..=11).contains(&exp) {
        w.write_bits((exp + 243) as u64, 8);
    } else {
        w.write_bits(255, 8);
        w.write_bits(bits, 64);
    }
}

fn read_zero_threshold(r: &mut BitReader<'_>) -> Option<f64> {
    match r.read_bits(8)? {
        0 => Some(0.0),
        255 => Some(f64::from_bits(r.read_bits(64)?)),
        // 0.5 * 2^(b - 243) = 2^(b - 244), always a normal float.
        b => Some(f64::from_bits(((b + 1023 - 244) & 0x7ff) << 52)),
    }
}

/// Go's `putCustomBound`: multiples of 0.001 in 0..=33554.43 as varbit(x*1000 + 1),
/// anything else as a 0 bit and the 64 bits.
fn put_custom_bound(w: &mut BitWriter, f: f64) {
    let tf = f * 1000.0;
    let whole = {
        let i = (f * 1000.0).round() as u64;
        f == i as f64 / 1000.0
    };
    if !(0.0..=33_554_430.0).contains(&tf) || !whole {
        w.write_bit(false);
        w.write_bits(f.to_bits(), 64);
        return;
    }
    put_varbit_uint(w, tf.round() as u64 + 1);
}

fn read_custom_bound(r: &mut BitReader<'_>) -> Option<f64> {
    match read_varbit_uint(r)? {
        0 => Some(f64::from_bits(r.read_bits(64)?)),
        b => Some((b - 1) as f64 / 1000.0),
    }
}

/// Go's `counterResetHint`: the hint a decoded sample gets from its chunk's header
/// and its 1-based position.
pub(crate) fn counter_reset_hint(header: CounterResetHeader, position: u16) -> CounterResetHint {
    match header {
        CounterResetHeader::Gauge => CounterResetHint::Gauge,
        _ if position > 1 => CounterResetHint::NotCounterReset,
        _ => CounterResetHint::Unknown,
    }
}

pub(crate) fn is_stale(sum: f64) -> bool {
    sum.to_bits() == STALE_NAN_BITS
}

/// Absolute counts of delta-encoded buckets.
fn absolute(deltas: &[i64]) -> impl Iterator<Item = i64> + '_ {
    let mut cur = 0i64;
    deltas.iter().map(move |d| {
        cur = cur.wrapping_add(*d);
        cur
    })
}

/// Checks that a histogram's bucket vectors match its spans.
pub(crate) fn check_bucket_counts(
    what: &str,
    positive: (&[Span], usize),
    negative: (&[Span], usize),
) -> Result<()> {
    let p = span_buckets(positive.0);
    let n = span_buckets(negative.0);
    if p != positive.1 as u64 || n != negative.1 as u64 {
        return Err(Error::invalid(
            what,
            format!(
                "spans describe {p} positive and {n} negative buckets, histogram has {} and {}",
                positive.1, negative.1
            ),
        ));
    }
    Ok(())
}

/// A histogram chunk being written.
///
/// All histograms of a chunk share one layout (schema, zero threshold, spans,
/// custom bounds). Where Prometheus would re-code the chunk or cut a new one (layout
/// change, counter reset, a sample after a stale marker), `append` returns
/// [`Error::InvalidInput`] and leaves the chunk unchanged; the caller starts a new
/// chunk. Stale markers (sum = staleness NaN) are always accepted.
#[derive(Debug, Clone)]
pub struct HistogramChunk {
    w: BitWriter,
    num: u16,
    layout: Layout,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: u64,
    leading: u8,
    trailing: u8,
}

impl Default for HistogramChunk {
    fn default() -> Self {
        HistogramChunk::new()
    }
}

impl HistogramChunk {
    /// An empty chunk with an unknown counter reset header.
    pub fn new() -> Self {
        HistogramChunk {
            w: BitWriter::with_header(&[0, 0, 0], 128),
            num: 0,
            layout: Layout::default(),
            t: 0,
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: 0,
            leading: 0xff,
            trailing: 0,
        }
    }

    /// Number of samples in the chunk.
    pub fn num_samples(&self) -> usize {
        usize::from(self.num)
    }

    /// The chunk data as Prometheus stores it.
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// The counter reset header.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        CounterResetHeader::from_flags(self.w.buf[2])
    }

    /// Sets the counter reset header. The first sample sets it too: `Gauge` for a
    /// gauge histogram, `CounterReset` for an explicit reset hint.
    pub fn set_counter_reset_header(&mut self, header: CounterResetHeader) {
        self.w.buf[2] = (self.w.buf[2] & !CounterResetHeader::MASK) | header as u8;
    }

    /// Appends a histogram sample.
    pub fn append(&mut self, t: i64, h: &Histogram) -> Result<()> {
        if self.num == u16::MAX {
            return Err(Error::invalid(WHAT, "chunk is full"));
        }
        let stale = is_stale(h.sum);
        if !stale {
            check_bucket_counts(
                WHAT,
                (&h.positive_spans, h.positive_buckets.len()),
                (&h.negative_spans, h.negative_buckets.len()),
            )?;
        }
        if self.num > 0 && !stale {
            self.check_appendable(h)?;
        }
        let empty = Histogram {
            sum: h.sum,
            ..Default::default()
        };
        let hh = if stale { &empty } else { h };
        if self.num == 0 {
            self.append_first(t, hh);
            match h.counter_reset_hint {
                CounterResetHint::Gauge => self.set_counter_reset_header(CounterResetHeader::Gauge),
                CounterResetHint::CounterReset => {
                    self.set_counter_reset_header(CounterResetHeader::CounterReset)
                }
                _ => {}
            }
        } else {
            self.append_next(t, hh, stale);
        }
        self.num += 1;
        let n = self.num.to_be_bytes();
        self.w.buf[0] = n[0];
        self.w.buf[1] = n[1];
        Ok(())
    }

    fn check_appendable(&self, h: &Histogram) -> Result<()> {
        let cut = |why: &str| Err(Error::invalid(WHAT, format!("{why}: start a new chunk")));
        if is_stale(f64::from_bits(self.sum)) {
            return cut("sample after a stale marker");
        }
        if !self.layout.matches(
            h.schema,
            h.zero_threshold,
            &h.positive_spans,
            &h.negative_spans,
            &h.custom_values,
        ) {
            return cut("bucket layout differs");
        }
        if self.counter_reset_header() != CounterResetHeader::Gauge {
            let reset = h.counter_reset_hint == CounterResetHint::CounterReset
                || h.count < self.cnt
                || h.zero_count < self.zcnt
                || absolute(&h.positive_buckets)
                    .zip(absolute(&self.p_buckets))
                    .any(|(new, old)| new < old)
                || absolute(&h.negative_buckets)
                    .zip(absolute(&self.n_buckets))
                    .any(|(new, old)| new < old);
            if reset {
                return cut("counter reset");
            }
        }
        Ok(())
    }

    fn append_first(&mut self, t: i64, h: &Histogram) {
        self.layout = Layout {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive_spans: h.positive_spans.clone(),
            negative_spans: h.negative_spans.clone(),
            custom_values: if h.schema == Histogram::CUSTOM_BUCKETS_SCHEMA {
                h.custom_values.clone()
            } else {
                Vec::new()
            },
        };
        self.layout.write(&mut self.w);
        put_varbit_int(&mut self.w, t);
        put_varbit_uint(&mut self.w, h.count);
        put_varbit_uint(&mut self.w, h.zero_count);
        self.w.write_bits(h.sum.to_bits(), 64);
        for b in h.positive_buckets.iter().chain(&h.negative_buckets) {
            put_varbit_int(&mut self.w, *b);
        }
        self.t = t;
        self.cnt = h.count;
        self.zcnt = h.zero_count;
        self.t_delta = 0;
        self.cnt_delta = 0;
        self.zcnt_delta = 0;
        self.p_buckets = h.positive_buckets.clone();
        self.n_buckets = h.negative_buckets.clone();
        self.p_deltas = vec![0; h.positive_buckets.len()];
        self.n_deltas = vec![0; h.negative_buckets.len()];
        self.sum = h.sum.to_bits();
    }

    fn append_next(&mut self, t: i64, h: &Histogram, stale: bool) {
        let t_delta = t.wrapping_sub(self.t);
        let cnt_delta = (h.count as i64).wrapping_sub(self.cnt as i64);
        let zcnt_delta = (h.zero_count as i64).wrapping_sub(self.zcnt as i64);
        let (cnt_dod, zcnt_dod) = if stale {
            (0, 0)
        } else {
            (
                cnt_delta.wrapping_sub(self.cnt_delta),
                zcnt_delta.wrapping_sub(self.zcnt_delta),
            )
        };
        put_varbit_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
        put_varbit_int(&mut self.w, cnt_dod);
        put_varbit_int(&mut self.w, zcnt_dod);
        let sum = h.sum.to_bits();
        xor_write(
            &mut self.w,
            sum,
            self.sum,
            &mut self.leading,
            &mut self.trailing,
        );
        // A stale sample has no buckets (and leaves the bucket state alone).
        for (i, b) in h.positive_buckets.iter().enumerate() {
            let delta = b.wrapping_sub(self.p_buckets[i]);
            put_varbit_int(&mut self.w, delta.wrapping_sub(self.p_deltas[i]));
            self.p_deltas[i] = delta;
            self.p_buckets[i] = *b;
        }
        for (i, b) in h.negative_buckets.iter().enumerate() {
            let delta = b.wrapping_sub(self.n_buckets[i]);
            put_varbit_int(&mut self.w, delta.wrapping_sub(self.n_deltas[i]));
            self.n_deltas[i] = delta;
            self.n_buckets[i] = *b;
        }
        // Go keeps these even for stale samples, whose own values are zero.
        self.t = t;
        self.cnt = h.count;
        self.zcnt = h.zero_count;
        self.t_delta = t_delta;
        self.cnt_delta = cnt_delta;
        self.zcnt_delta = zcnt_delta;
        self.sum = sum;
    }
}

/// Iterates the samples of histogram chunk data, yielding `(timestamp, histogram)`.
///
/// Each histogram carries the counter reset hint Prometheus derives: `Gauge` in a
/// gauge chunk, `NotCounterReset` after the first sample, `Unknown` for the first.
/// A stale marker comes out as a histogram with only the stale sum set. Schemas
/// 9..=52 (from a future Prometheus) are reduced to 8, as Prometheus does. Corrupt
/// data yields one `Err` and then ends.
#[derive(Debug, Clone)]
pub struct HistogramIterator<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    header: CounterResetHeader,
    layout: Layout,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: u64,
    leading: u8,
    trailing: u8,
    failed: bool,
}

impl<'a> HistogramIterator<'a> {
    /// An iterator over chunk `data` (as stored: 3-byte header first).
    pub fn new(data: &'a [u8]) -> Result<HistogramIterator<'a>> {
        let (total, header, stream) = split_header(data, WHAT)?;
        Ok(HistogramIterator {
            r: BitReader::new(stream),
            total,
            read: 0,
            header,
            layout: Layout::default(),
            t: 0,
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: 0,
            leading: 0,
            trailing: 0,
            failed: false,
        })
    }

    /// Number of samples the chunk header announces.
    pub fn num_samples(&self) -> usize {
        usize::from(self.total)
    }

    /// The chunk's counter reset header.
    pub fn counter_reset_header(&self) -> CounterResetHeader {
        self.header
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::corrupt(
            WHAT,
            format!("sample {} of {}: {reason}", self.read + 1, self.total),
        )
    }

    fn read_first(&mut self) -> Result<()> {
        self.layout = Layout::read(&mut self.r, WHAT)?;
        let (np, nn) = self.layout.bucket_counts();
        let eof = |s: &Self| s.corrupt("truncated sample");
        self.t = read_varbit_int(&mut self.r).ok_or_else(|| eof(self))?;
        self.cnt = read_varbit_uint(&mut self.r).ok_or_else(|| eof(self))?;
        self.zcnt = read_varbit_uint(&mut self.r).ok_or_else(|| eof(self))?;
        self.sum = self.r.read_bits(64).ok_or_else(|| eof(self))?;
        // The layout check bounded np + nn by the bits left; the vectors grow with
        // what is actually decoded.
        self.p_buckets = Vec::new();
        self.n_buckets = Vec::new();
        for _ in 0..np {
            let v = read_varbit_int(&mut self.r).ok_or_else(|| eof(self))?;
            self.p_buckets.push(v);
        }
        for _ in 0..nn {
            let v = read_varbit_int(&mut self.r).ok_or_else(|| eof(self))?;
            self.n_buckets.push(v);
        }
        self.p_deltas = vec![0; self.p_buckets.len()];
        self.n_deltas = vec![0; self.n_buckets.len()];
        Ok(())
    }

    fn read_next(&mut self) -> Result<()> {
        let eof = |s: &Self| s.corrupt("truncated sample");
        let t_dod = read_varbit_int(&mut self.r).ok_or_else(|| eof(self))?;
        self.t_delta = self.t_delta.wrapping_add(t_dod);
        self.t = self.t.wrapping_add(self.t_delta);
        let cnt_dod = read_varbit_int(&mut self.r).ok_or_else(|| eof(self))?;
        self.cnt_delta = self.cnt_delta.wrapping_add(cnt_dod);
        self.cnt = (self.cnt as i64).wrapping_add(self.cnt_delta) as u64;
        let zcnt_dod = read_varbit_int(&mut self.r).ok_or_else(|| eof(self))?;
        self.zcnt_delta = self.zcnt_delta.wrapping_add(zcnt_dod);
        self.zcnt = (self.zcnt as i64).wrapping_add(self.zcnt_delta) as u64;
        xor_read(
            &mut self.r,
            &mut self.sum,
            &mut self.leading,
            &mut self.trailing,
        )
        .map_err(|e| {
            self.corrupt(match e {
                XorError::Eof => "truncated sum",
                XorError::BadWindow => "bad XOR window in sum",
            })
        })?;
        if is_stale(f64::from_bits(self.sum)) {
            return Ok(());
        }
        for i in 0..self.p_buckets.len() {
            let dod = read_varbit_int(&mut self.r).ok_or_else(|| eof(self))?;
            self.p_deltas[i] = self.p_deltas[i].wrapping_add(dod);
            self.p_buckets[i] = self.p_buckets[i].wrapping_add(self.p_deltas[i]);
        }
        for i in 0..self.n_buckets.len() {
            let dod = read_varbit_int(&mut self.r).ok_or_else(|| eof(self))?;
            self.n_deltas[i] = self.n_deltas[i].wrapping_add(dod);
            self.n_buckets[i] = self.n_buckets[i].wrapping_add(self.n_deltas[i]);
        }
        Ok(())
    }

    fn current(&self) -> Histogram {
        let sum = f64::from_bits(self.sum);
        if is_stale(sum) {
            return Histogram {
                sum,
                ..Default::default()
            };
        }
        let mut h = Histogram {
            counter_reset_hint: counter_reset_hint(self.header, self.read),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: self.zcnt,
            count: self.cnt,
            sum,
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: self.p_buckets.clone(),
            negative_buckets: self.n_buckets.clone(),
            custom_values: self.layout.custom_values.clone(),
        };
        if h.schema > Histogram::EXPONENTIAL_SCHEMA_MAX {
            h.reduce_resolution(Histogram::EXPONENTIAL_SCHEMA_MAX);
        }
        h
    }
}

/// Splits histogram chunk data into count, counter reset header and bit stream.
pub(crate) fn split_header<'a>(
    data: &'a [u8],
    what: &'static str,
) -> Result<(u16, CounterResetHeader, &'a [u8])> {
    match data {
        [a, b, flags, rest @ ..] => Ok((
            u16::from_be_bytes([*a, *b]),
            CounterResetHeader::from_flags(*flags),
            rest,
        )),
        _ => Err(Error::corrupt(
            what,
            format!(
                "{} bytes, shorter than the {HISTOGRAM_HEADER_SIZE}-byte header",
                data.len()
            ),
        )),
    }
}

impl Iterator for HistogramIterator<'_> {
    type Item = Result<(i64, Histogram)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read >= self.total {
            return None;
        }
        let res = if self.read == 0 {
            self.read_first()
        } else {
            self.read_next()
        };
        if let Err(e) = res {
            self.failed = true;
            return Some(Err(e));
        }
        self.read += 1;
        Some(Ok((self.t, self.current())))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            (0, Some(0))
        } else {
            (0, Some(usize::from(self.total - self.read)))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn spans() -> impl Strategy<Value = Vec<Span>> {
        proptest::collection::vec((-5i32..5, 0u32..4), 0..4).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (o, l))| Span {
                    offset: if i == 0 { o } else { o.abs() },
                    length: l,
                })
                .collect()
        })
    }

    /// A layout and a series of histograms with monotonically growing counts.
    fn series() -> impl Strategy<Value = (Vec<(i64, Histogram)>, bool)> {
        (
            prop_oneof![-4i32..=8, Just(Histogram::CUSTOM_BUCKETS_SCHEMA)],
            prop_oneof![Just(0.0), Just(2f64.powi(-128)), Just(0.001), Just(1e-300)],
            spans(),
            spans(),
            proptest::collection::vec(
                prop_oneof![Just(0.5), Just(1.0), Just(2.25), any::<f64>()],
                0..4,
            ),
            proptest::collection::vec((any::<u16>(), 1i64..100_000, any::<f64>()), 1..40),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(schema, zt, ps, ns, cv, steps, gauge, stale_tail)| {
                let np: u32 = ps.iter().map(|s| s.length).sum();
                let nn: u32 = ns.iter().map(|s| s.length).sum();
                let mut p_abs = vec![0i64; np as usize];
                let mut n_abs = vec![0i64; nn as usize];
                let mut t = 1_000_000i64;
                let mut out = Vec::new();
                let (mut count, mut zero) = (0u64, 0u64);
                for (seed, dt, sum) in steps {
                    let grow = i64::from(seed % 7);
                    for (j, b) in p_abs.iter_mut().enumerate() {
                        *b += grow * (j as i64 % 3);
                    }
                    for b in n_abs.iter_mut() {
                        *b += grow;
                    }
                    count += seed as u64;
                    zero += u64::from(seed % 5);
                    t += dt;
                    let to_deltas = |abs: &[i64]| {
                        let mut prev = 0;
                        abs.iter()
                            .map(|a| {
                                let d = a - prev;
                                prev = *a;
                                d
                            })
                            .collect::<Vec<_>>()
                    };
                    out.push((
                        t,
                        Histogram {
                            counter_reset_hint: if gauge {
                                CounterResetHint::Gauge
                            } else {
                                CounterResetHint::Unknown
                            },
                            schema,
                            zero_threshold: zt,
                            zero_count: zero,
                            count,
                            sum,
                            positive_spans: ps.clone(),
                            negative_spans: ns.clone(),
                            positive_buckets: to_deltas(&p_abs),
                            negative_buckets: to_deltas(&n_abs),
                            custom_values: if schema == Histogram::CUSTOM_BUCKETS_SCHEMA {
                                cv.clone()
                            } else {
                                Vec::new()
                            },
                        },
                    ));
                }
                if stale_tail {
                    t += 15_000;
                    out.push((
                        t,
                        Histogram {
                            sum: f64::from_bits(STALE_NAN_BITS),
                            ..Default::default()
                        },
                    ));
                    out.push((
                        t + 1,
                        Histogram {
                            sum: f64::from_bits(STALE_NAN_BITS),
                            ..Default::default()
                        },
                    ));
                }
                (out, gauge)
            })
    }

    /// What the decoder returns for an appended histogram.
    pub(crate) fn expected(h: &Histogram, position: usize, gauge: bool) -> Histogram {
        if is_stale(h.sum) {
            return Histogram {
                sum: h.sum,
                ..Default::default()
            };
        }
        let mut want = h.clone();
        want.counter_reset_hint = if gauge {
            CounterResetHint::Gauge
        } else if position > 1 {
            CounterResetHint::NotCounterReset
        } else {
            CounterResetHint::Unknown
        };
        want
    }

    /// Histogram equality with floats compared bitwise (sums may be NaN).
    pub(crate) fn same(a: &Histogram, b: &Histogram) -> bool {
        a.sum.to_bits() == b.sum.to_bits()
            && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
            && a.custom_values.len() == b.custom_values.len()
            && a.custom_values
                .iter()
                .zip(&b.custom_values)
                .all(|(x, y)| x == y || x.to_bits() == y.to_bits())
            && Histogram {
                sum: 0.0,
                zero_threshold: 0.0,
                custom_values: Vec::new(),
                ..a.clone()
            } == Histogram {
                sum: 0.0,
                zero_threshold: 0.0,
                custom_values: Vec::new(),
                ..b.clone()
            }
    }

    proptest! {
        #[test]
        fn round_trip((samples, gauge) in series()) {
            let mut c = HistogramChunk::new();
            for (t, h) in &samples {
                c.append(*t, h).unwrap();
            }
            prop_assert_eq!(c.num_samples(), samples.len());
            let got: Vec<_> = HistogramIterator::new(c.bytes()).unwrap().collect::<Result<_>>().unwrap();
            prop_assert_eq!(got.len(), samples.len());
            for (i, ((t, h), (gt, gh))) in samples.iter().zip(&got).enumerate() {
                prop_assert_eq!(t, gt);
                let mut want = expected(h, i + 1, gauge);
                // Custom bounds round-trip through their encoding.
                if want.schema == Histogram::CUSTOM_BUCKETS_SCHEMA {
                    want.custom_values = gh.custom_values.clone();
                }
                prop_assert!(same(&want, gh), "sample {}: want {:?}, got {:?}", i, want, gh);
            }
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(it) = HistogramIterator::new(&data) {
                prop_assert!(it.count() <= 65535);
            }
        }

        #[test]
        fn corrupted_chunks_never_panic((samples, _) in series(),
                                        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut c = HistogramChunk::new();
            for (t, h) in &samples {
                c.append(*t, h).unwrap();
            }
            let mut data = c.bytes().to_vec();
            for (i, x) in flips {
                let i = i % data.len();
                data[i] ^= x;
            }
            if let Ok(it) = HistogramIterator::new(&data) {
                for s in it {
                    if s.is_err() { break; }
                }
            }
            for cut in 0..data.len() {
                if let Ok(it) = HistogramIterator::new(&c.bytes()[..cut]) {
                    let _ = it.count();
                }
            }
        }
    }

    fn hist(count: u64, buckets: Vec<i64>) -> Histogram {
        Histogram {
            schema: 0,
            zero_threshold: 2f64.powi(-128),
            count,
            sum: 1.5,
            positive_spans: vec![Span {
                offset: 0,
                length: buckets.len() as u32,
            }],
            positive_buckets: buckets,
            ..Default::default()
        }
    }

    /// Bytes built by hand from Go's `appendHistogram` for two samples of the
    /// layout {schema 0, zero threshold 2^-128, positive span (0, 2)}.
    #[test]
    fn known_bytes() {
        let mut c = HistogramChunk::new();
        c.append(1000, &hist(3, vec![1, 1])).unwrap();
        c.append(2000, &hist(5, vec![1, 2])).unwrap();
        let mut w = BitWriter::with_header(&[0, 2, 0], 64);
        w.write_bits(116, 8); // zero threshold 2^-128 = 0.5 * 2^-127: -127 + 243
        w.write_bits(0, 1);
        w.write_bits(0b10, 2);
        w.write_bits(1, 3); // 1 span
        w.write_bits(0b10, 2);
        w.write_bits(2, 3); // length 2
        w.write_bits(0, 1); // offset 0
        w.write_bits(0, 1); // no negative spans
        w.write_bits(0b11110, 5);
        w.write_bits(1000, 12); // t: 1000 is within -2047..=2048
        w.write_bits(0b10, 2);
        w.write_bits(3, 3); // count 3
        w.write_bits(0, 1); // zero count 0
        w.write_bits(1.5f64.to_bits(), 64); // sum
        w.write_bits(0b10, 2);
        w.write_bits(1, 3); // bucket delta 1
        w.write_bits(0b10, 2);
        w.write_bits(1, 3); // bucket delta 1
                            // Sample 2: t dod 1000, count dod 2, zero dod 0, sum unchanged, buckets
                            // dods 0 and 1.
        w.write_bits(0b11110, 5);
        w.write_bits(1000, 12);
        w.write_bits(0b10, 2);
        w.write_bits(2, 3);
        w.write_bits(0, 1);
        w.write_bits(0, 1);
        w.write_bits(0, 1);
        w.write_bits(0b10, 2);
        w.write_bits(1, 3);
        assert_eq!(c.bytes(), &w.buf[..]);
        let got: Vec<_> = HistogramIterator::new(c.bytes())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got[1].1.positive_buckets, vec![1, 2]);
        assert_eq!(got[1].1.count, 5);
        assert_eq!(
            got[1].1.counter_reset_hint,
            CounterResetHint::NotCounterReset
        );
        assert_eq!(got[0].1.counter_reset_hint, CounterResetHint::Unknown);
    }

    #[test]
    fn refuses_what_prometheus_would_cut() {
        let mut c = HistogramChunk::new();
        c.append(1, &hist(3, vec![1, 1])).unwrap();
        // Counter reset in a bucket (absolute 2 -> 1).
        assert!(c.append(2, &hist(4, vec![1, 0])).is_err());
        // Layout change.
        assert!(c.append(2, &hist(4, vec![1, 1, 1])).is_err());
        // Buckets not matching spans.
        let mut bad = hist(4, vec![1, 1]);
        bad.positive_buckets.push(1);
        assert!(c.append(2, &bad).is_err());
        assert_eq!(c.num_samples(), 1);
        let stale = Histogram {
            sum: f64::from_bits(STALE_NAN_BITS),
            ..Default::default()
        };
        c.append(3, &stale).unwrap();
        assert!(c.append(4, &hist(5, vec![1, 1])).is_err());
        c.append(5, &stale).unwrap();
        assert_eq!(HistogramIterator::new(c.bytes()).unwrap().count(), 3);
    }

    #[test]
    fn reserved_schema_is_reduced_and_unknown_rejected() {
        let mut h = hist(10, vec![1, 1, 1, 1]);
        h.schema = 9;
        h.positive_spans = vec![Span {
            offset: 1,
            length: 4,
        }];
        let mut c = HistogramChunk::new();
        c.append(1, &h).unwrap();
        let (_, got) = HistogramIterator::new(c.bytes())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(got.schema, 8);
        assert_eq!(
            got.positive_spans,
            vec![Span {
                offset: 1,
                length: 2
            }]
        );
        assert_eq!(got.positive_buckets, vec![3, 4]);

        h.schema = 53;
        let mut c = HistogramChunk::new();
        c.append(1, &h).unwrap();
        let r = HistogramIterator::new(c.bytes()).unwrap().next().unwrap();
        assert!(matches!(r, Err(Error::Unsupported { .. })));
    }

    #[test]
    fn zero_threshold_codes() {
        for (th, len) in [
            (0.0, 1),
            (2f64.powi(-128), 1),
            (2f64.powi(-243), 1),
            (1024.0, 1),
            (2048.0, 9),
            (2f64.powi(-244), 9),
            (0.001, 9),
            (f64::NAN, 9),
            (-0.5, 9),
        ] {
            let mut w = BitWriter::default();
            put_zero_threshold(&mut w, th);
            assert_eq!(w.buf.len(), len, "threshold {th}");
            let got = read_zero_threshold(&mut BitReader::new(&w.buf)).unwrap();
            assert_eq!(got.to_bits(), th.to_bits(), "threshold {th}");
        }
        let mut w = BitWriter::default();
        put_zero_threshold(&mut w, 2f64.powi(-128));
        assert_eq!(w.buf, vec![116]);
    }

    #[test]
    fn custom_bound_codes() {
        for (v, exact) in [
            (0.0, true),
            (0.5, true),
            (33554.43, true),
            (33554.431, true),
            (-1.0, true),
            (0.0001, true),
            (f64::INFINITY, true),
        ] {
            let mut w = BitWriter::default();
            put_custom_bound(&mut w, v);
            let got = read_custom_bound(&mut BitReader::new(&w.buf)).unwrap();
            assert_eq!(got == v, exact, "{v} -> {got}");
        }
        let mut w = BitWriter::default();
        put_custom_bound(&mut w, 0.5);
        // varbit uint 501: 0b1110 + 9 bits.
        assert_eq!(w.buf.len(), 2);
    }

    #[test]
    fn hostile_span_counts_do_not_allocate() {
        // Header: 1 sample; layout: threshold 0, schema 0, span count 2^56-ish.
        let mut w = BitWriter::with_header(&[0, 1, 0], 16);
        w.write_bits(0, 8);
        w.write_bits(0, 1);
        put_varbit_uint(&mut w, 1 << 50);
        let r = HistogramIterator::new(&w.buf).unwrap().next().unwrap();
        assert!(r.is_err());
        // One span with 2^32-1 buckets.
        let mut w = BitWriter::with_header(&[0, 1, 0], 16);
        w.write_bits(0, 8);
        w.write_bits(0, 1);
        put_varbit_uint(&mut w, 1);
        put_varbit_uint(&mut w, u64::from(u32::MAX));
        put_varbit_int(&mut w, 0);
        put_varbit_uint(&mut w, 0);
        let r = HistogramIterator::new(&w.buf).unwrap().next().unwrap();
        assert!(r.is_err());
    }
}
