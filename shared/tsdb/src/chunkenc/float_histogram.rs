//! The float histogram chunk (Prometheus's `FloatHistogramChunk`).
//!
//! Same header and layout as the integer histogram chunk. The first sample stores
//! its timestamp (varbit), count, zero count, sum and every bucket as raw 64-bit
//! floats; later samples a varbit timestamp delta-of-delta and every float XOR-encoded
//! against its previous value, each with its own leading/trailing-zero window. A
//! stale sample after the first stores no buckets.

use model::{CounterResetHint, FloatHistogram, Histogram};

use super::bstream::{
    put_varbit_int, read_varbit_int, xor_read, xor_write, BitReader, BitWriter, XorError,
};
use super::histogram::{check_bucket_counts, counter_reset_hint, is_stale, split_header, Layout};
use super::CounterResetHeader;
use crate::{Error, Result};

const WHAT: &str = "float histogram chunk";

/// One XOR-encoded float with its window (Go's `xorValue`).
#[derive(Debug, Clone, Copy)]
struct XorValue {
    bits: u64,
    leading: u8,
    trailing: u8,
}

impl XorValue {
    fn new(v: f64, leading: u8) -> Self {
        XorValue {
            bits: v.to_bits(),
            leading,
            trailing: 0,
        }
    }

    fn write(&mut self, w: &mut BitWriter, v: f64) {
        let bits = v.to_bits();
        xor_write(w, bits, self.bits, &mut self.leading, &mut self.trailing);
        self.bits = bits;
    }

    fn read(&mut self, r: &mut BitReader<'_>) -> std::result::Result<(), XorError> {
        xor_read(r, &mut self.bits, &mut self.leading, &mut self.trailing).map(|_| ())
    }

    fn value(&self) -> f64 {
        f64::from_bits(self.bits)
    }
}

/// A float histogram chunk being written. Same contract as
/// [`HistogramChunk`](super::HistogramChunk): one layout per chunk; `append` refuses
/// (with [`Error::InvalidInput`]) what Prometheus would start a new chunk for.
#[derive(Debug, Clone)]
pub struct FloatHistogramChunk {
    w: BitWriter,
    num: u16,
    layout: Layout,
    t: i64,
    t_delta: i64,
    cnt: XorValue,
    zcnt: XorValue,
    sum: XorValue,
    p_buckets: Vec<XorValue>,
    n_buckets: Vec<XorValue>,
}

impl Default for FloatHistogramChunk {
    fn default() -> Self {
        FloatHistogramChunk::new()
    }
}

impl FloatHistogramChunk {
    /// An empty chunk with an unknown counter reset header.
    pub fn new() -> Self {
        FloatHistogramChunk {
            w: BitWriter::with_header(&[0, 0, 0], 128),
            num: 0,
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            cnt: XorValue::new(0.0, 0xff),
            zcnt: XorValue::new(0.0, 0xff),
            sum: XorValue::new(0.0, 0xff),
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
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

    /// Appends a float histogram sample.
    pub fn append(&mut self, t: i64, h: &FloatHistogram) -> Result<()> {
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
        let empty = FloatHistogram {
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
            self.append_next(t, hh);
        }
        self.num += 1;
        let n = self.num.to_be_bytes();
        self.w.buf[0] = n[0];
        self.w.buf[1] = n[1];
        Ok(())
    }

    fn check_appendable(&self, h: &FloatHistogram) -> Result<()> {
        let cut = |why: &str| Err(Error::invalid(WHAT, format!("{why}: start a new chunk")));
        if is_stale(self.sum.value()) {
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
                || h.count < self.cnt.value()
                || h.zero_count < self.zcnt.value()
                || h.positive_buckets
                    .iter()
                    .zip(&self.p_buckets)
                    .any(|(new, old)| *new < old.value())
                || h.negative_buckets
                    .iter()
                    .zip(&self.n_buckets)
                    .any(|(new, old)| *new < old.value());
            if reset {
                return cut("counter reset");
            }
        }
        Ok(())
    }

    fn append_first(&mut self, t: i64, h: &FloatHistogram) {
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
        self.w.write_bits(h.count.to_bits(), 64);
        self.w.write_bits(h.zero_count.to_bits(), 64);
        self.w.write_bits(h.sum.to_bits(), 64);
        for b in h.positive_buckets.iter().chain(&h.negative_buckets) {
            self.w.write_bits(b.to_bits(), 64);
        }
        self.t = t;
        self.t_delta = 0;
        self.cnt.bits = h.count.to_bits();
        self.zcnt.bits = h.zero_count.to_bits();
        self.sum.bits = h.sum.to_bits();
        self.p_buckets = h
            .positive_buckets
            .iter()
            .map(|v| XorValue::new(*v, 0xff))
            .collect();
        self.n_buckets = h
            .negative_buckets
            .iter()
            .map(|v| XorValue::new(*v, 0xff))
            .collect();
    }

    fn append_next(&mut self, t: i64, h: &FloatHistogram) {
        let t_delta = t.wrapping_sub(self.t);
        put_varbit_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
        self.cnt.write(&mut self.w, h.count);
        self.zcnt.write(&mut self.w, h.zero_count);
        self.sum.write(&mut self.w, h.sum);
        // A stale sample has no buckets (and leaves the bucket state alone).
        for (x, v) in self.p_buckets.iter_mut().zip(&h.positive_buckets) {
            x.write(&mut self.w, *v);
        }
        for (x, v) in self.n_buckets.iter_mut().zip(&h.negative_buckets) {
            x.write(&mut self.w, *v);
        }
        self.t = t;
        self.t_delta = t_delta;
    }
}

/// Iterates the samples of float histogram chunk data, yielding
/// `(timestamp, float histogram)`, with the same conventions as
/// [`HistogramIterator`](super::HistogramIterator).
#[derive(Debug, Clone)]
pub struct FloatHistogramIterator<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    header: CounterResetHeader,
    layout: Layout,
    t: i64,
    t_delta: i64,
    cnt: XorValue,
    zcnt: XorValue,
    sum: XorValue,
    p_buckets: Vec<XorValue>,
    n_buckets: Vec<XorValue>,
    failed: bool,
}

impl<'a> FloatHistogramIterator<'a> {
    /// An iterator over chunk `data` (as stored: 3-byte header first).
    pub fn new(data: &'a [u8]) -> Result<FloatHistogramIterator<'a>> {
        let (total, header, stream) = split_header(data, WHAT)?;
        Ok(FloatHistogramIterator {
            r: BitReader::new(stream),
            total,
            read: 0,
            header,
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            cnt: XorValue::new(0.0, 0),
            zcnt: XorValue::new(0.0, 0),
            sum: XorValue::new(0.0, 0),
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
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
        self.cnt.bits = self.r.read_bits(64).ok_or_else(|| eof(self))?;
        self.zcnt.bits = self.r.read_bits(64).ok_or_else(|| eof(self))?;
        self.sum.bits = self.r.read_bits(64).ok_or_else(|| eof(self))?;
        // The layout check bounded np + nn by the bits left; the vectors grow with
        // what is actually decoded.
        self.p_buckets = Vec::new();
        self.n_buckets = Vec::new();
        for _ in 0..np {
            let b = self.r.read_bits(64).ok_or_else(|| eof(self))?;
            self.p_buckets.push(XorValue::new(f64::from_bits(b), 0));
        }
        for _ in 0..nn {
            let b = self.r.read_bits(64).ok_or_else(|| eof(self))?;
            self.n_buckets.push(XorValue::new(f64::from_bits(b), 0));
        }
        Ok(())
    }

    fn read_next(&mut self) -> Result<()> {
        let t_dod =
            read_varbit_int(&mut self.r).ok_or_else(|| self.corrupt("truncated timestamp"))?;
        self.t_delta = self.t_delta.wrapping_add(t_dod);
        self.t = self.t.wrapping_add(self.t_delta);
        let mut res = self.cnt.read(&mut self.r);
        if res.is_ok() {
            res = self.zcnt.read(&mut self.r);
        }
        if res.is_ok() {
            res = self.sum.read(&mut self.r);
        }
        if res.is_ok() && !is_stale(self.sum.value()) {
            for b in self.p_buckets.iter_mut().chain(self.n_buckets.iter_mut()) {
                res = b.read(&mut self.r);
                if res.is_err() {
                    break;
                }
            }
        }
        res.map_err(|e| {
            self.corrupt(match e {
                XorError::Eof => "truncated value",
                XorError::BadWindow => "bad XOR window",
            })
        })
    }

    fn current(&self) -> FloatHistogram {
        let sum = self.sum.value();
        if is_stale(sum) {
            return FloatHistogram {
                sum,
                ..Default::default()
            };
        }
        let mut h = FloatHistogram {
            counter_reset_hint: counter_reset_hint(self.header, self.read),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: self.zcnt.value(),
            count: self.cnt.value(),
            sum,
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: self.p_buckets.iter().map(XorValue::value).collect(),
            negative_buckets: self.n_buckets.iter().map(XorValue::value).collect(),
            custom_values: self.layout.custom_values.clone(),
        };
        if h.schema > Histogram::EXPONENTIAL_SCHEMA_MAX {
            h.reduce_resolution(Histogram::EXPONENTIAL_SCHEMA_MAX);
        }
        h
    }
}

impl Iterator for FloatHistogramIterator<'_> {
    type Item = Result<(i64, FloatHistogram)>;

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
mod tests {
    use super::*;
    use crate::chunkenc::histogram::tests::spans;
    use model::{Span, STALE_NAN_BITS};
    use proptest::prelude::*;

    fn same(a: &FloatHistogram, b: &FloatHistogram) -> bool {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        a.counter_reset_hint == b.counter_reset_hint
            && a.schema == b.schema
            && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
            && a.zero_count.to_bits() == b.zero_count.to_bits()
            && a.count.to_bits() == b.count.to_bits()
            && a.sum.to_bits() == b.sum.to_bits()
            && a.positive_spans == b.positive_spans
            && a.negative_spans == b.negative_spans
            && bits(&a.positive_buckets) == bits(&b.positive_buckets)
            && bits(&a.negative_buckets) == bits(&b.negative_buckets)
    }

    fn series() -> impl Strategy<Value = (Vec<(i64, FloatHistogram)>, bool)> {
        (
            -4i32..=8,
            spans(),
            spans(),
            proptest::collection::vec((0.0f64..1e6, 1i64..100_000, any::<f64>()), 1..30),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(schema, ps, ns, steps, gauge, stale_tail)| {
                let np: u32 = ps.iter().map(|s| s.length).sum();
                let nn: u32 = ns.iter().map(|s| s.length).sum();
                let mut p = vec![0.0f64; np as usize];
                let mut n = vec![0.0f64; nn as usize];
                let (mut count, mut zero, mut t) = (0.0f64, 0.0f64, 0i64);
                let mut out = Vec::new();
                for (grow, dt, sum) in steps {
                    for (j, b) in p.iter_mut().enumerate() {
                        *b += grow * j as f64;
                    }
                    for b in n.iter_mut() {
                        *b += grow / 3.0;
                    }
                    count += grow * 7.0;
                    zero += grow.sqrt();
                    t += dt;
                    out.push((
                        t,
                        FloatHistogram {
                            counter_reset_hint: if gauge {
                                CounterResetHint::Gauge
                            } else {
                                CounterResetHint::Unknown
                            },
                            schema,
                            zero_threshold: 0.001,
                            zero_count: zero,
                            count,
                            sum,
                            positive_spans: ps.clone(),
                            negative_spans: ns.clone(),
                            positive_buckets: p.clone(),
                            negative_buckets: n.clone(),
                            custom_values: Vec::new(),
                        },
                    ));
                }
                if stale_tail {
                    out.push((
                        t + 1,
                        FloatHistogram {
                            sum: f64::from_bits(STALE_NAN_BITS),
                            ..Default::default()
                        },
                    ));
                }
                (out, gauge)
            })
    }

    proptest! {
        #[test]
        fn round_trip((samples, gauge) in series()) {
            let mut c = FloatHistogramChunk::new();
            for (t, h) in &samples {
                c.append(*t, h).unwrap();
            }
            let got: Vec<_> = FloatHistogramIterator::new(c.bytes()).unwrap().collect::<Result<_>>().unwrap();
            prop_assert_eq!(got.len(), samples.len());
            for (i, ((t, h), (gt, gh))) in samples.iter().zip(&got).enumerate() {
                prop_assert_eq!(t, gt);
                let want = if is_stale(h.sum) {
                    FloatHistogram { sum: h.sum, ..Default::default() }
                } else {
                    FloatHistogram {
                        counter_reset_hint: if gauge {
                            CounterResetHint::Gauge
                        } else if i > 0 {
                            CounterResetHint::NotCounterReset
                        } else {
                            CounterResetHint::Unknown
                        },
                        ..h.clone()
                    }
                };
                prop_assert!(same(&want, gh), "sample {}: want {:?}, got {:?}", i, want, gh);
            }
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(it) = FloatHistogramIterator::new(&data) {
                prop_assert!(it.count() <= 65535);
            }
        }

        #[test]
        fn corrupted_chunks_never_panic((samples, _) in series(),
                                        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut c = FloatHistogramChunk::new();
            for (t, h) in &samples {
                c.append(*t, h).unwrap();
            }
            let mut data = c.bytes().to_vec();
            for (i, x) in flips {
                let i = i % data.len();
                data[i] ^= x;
            }
            if let Ok(it) = FloatHistogramIterator::new(&data) {
                for s in it {
                    if s.is_err() { break; }
                }
            }
            for cut in 0..c.bytes().len() {
                if let Ok(it) = FloatHistogramIterator::new(&c.bytes()[..cut]) {
                    let _ = it.count();
                }
            }
        }
    }

    /// Bytes built by hand from Go's `appendFloatHistogram`.
    #[test]
    fn known_bytes() {
        let h = |count: f64, b: f64| FloatHistogram {
            schema: -53,
            count,
            sum: 2.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![b],
            custom_values: vec![1.0],
            counter_reset_hint: CounterResetHint::Gauge,
            ..Default::default()
        };
        let mut c = FloatHistogramChunk::new();
        c.append(5, &h(1.0, 1.0)).unwrap();
        c.append(10, &h(1.0, 1.0)).unwrap();
        let mut w = BitWriter::with_header(&[0, 2, 0b1100_0000], 64);
        w.write_bits(0, 8); // zero threshold 0
        w.write_bits(0b1110, 4); // schema -53 fits the 9-bit code
        w.write_bits((-53i64) as u64, 9);
        w.write_bits(0b10, 2);
        w.write_bits(1, 3); // 1 positive span
        w.write_bits(0b10, 2);
        w.write_bits(1, 3); // length 1
        w.write_bits(0, 1); // offset 0
        w.write_bits(0, 1); // no negative spans
        w.write_bits(0b10, 2);
        w.write_bits(1, 3); // 1 custom bound
        w.write_bits(0b11110, 5);
        w.write_bits(1001, 12); // bound 1.0 as varbit(1000 + 1)
        w.write_bits(0b110, 3);
        w.write_bits(5, 6); // t = 5 (beyond the 3-bit range -3..=4)
        w.write_bits(1f64.to_bits(), 64); // count
        w.write_bits(0, 64); // zero count
        w.write_bits(2f64.to_bits(), 64); // sum
        w.write_bits(1f64.to_bits(), 64); // bucket
        w.write_bits(0b110, 3);
        w.write_bits(5, 6); // t dod 5
        w.write_bits(0, 4); // count, zero count, sum, bucket unchanged
        assert_eq!(c.bytes(), &w.buf[..]);
        let got: Vec<_> = FloatHistogramIterator::new(c.bytes())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, 10);
        assert_eq!(got[1].1.custom_values, vec![1.0]);
        assert_eq!(got[1].1.counter_reset_hint, CounterResetHint::Gauge);
    }

    #[test]
    fn refuses_counter_reset_and_layout_change() {
        let h = |c: f64| FloatHistogram {
            count: c,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![c],
            ..Default::default()
        };
        let mut c = FloatHistogramChunk::new();
        c.append(1, &h(2.0)).unwrap();
        assert!(c.append(2, &h(1.0)).is_err());
        let mut other = h(3.0);
        other.schema = 1;
        assert!(c.append(2, &other).is_err());
        c.append(2, &h(3.0)).unwrap();
        assert_eq!(c.num_samples(), 2);
    }
}
