//! Native histograms, as Prometheus's `model/histogram` package defines them.
//!
//! A native histogram has exponential buckets (schema -4..=8: bucket boundaries are
//! powers of `2^(2^-schema)`) or, with schema -53, custom bucket boundaries listed in
//! `custom_values` (NHCB). Buckets are stored sparsely: spans of consecutive buckets
//! (`Span`) and one count per bucket in the spans. [`Histogram`] has integer counts
//! with bucket counts *delta-encoded* (each is the difference to the previous
//! bucket, as in Prometheus); [`FloatHistogram`] has float counts with absolute
//! bucket counts.
//!
//! `Display` prints Prometheus's `String()` form:
//! `{count:5, sum:10, [-1,-0.5):2, [-0.001,0.001]:1, (0.5,1]:2}`.

use std::fmt;

use crate::format_go_float;

/// What a histogram sample says about a counter reset relative to the previous
/// sample (Prometheus's `histogram.CounterResetHint`; the numbers are Go's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CounterResetHint {
    /// Nothing is known; a reader has to compare with the previous sample.
    #[default]
    Unknown = 0,
    /// There was a counter reset right before this sample.
    CounterReset = 1,
    /// There was definitely no counter reset right before this sample.
    NotCounterReset = 2,
    /// A gauge histogram: counter resets do not apply.
    Gauge = 3,
}

/// A run of `length` consecutive buckets. The first span's `offset` is the index of
/// its first bucket; every later span's `offset` is the number of empty buckets
/// between it and the previous span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// A native histogram with integer counts (Prometheus's `histogram.Histogram`).
///
/// `positive_buckets`/`negative_buckets` hold one entry per bucket of the
/// corresponding spans, delta-encoded: the first is an absolute count, each next
/// one the difference to its predecessor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub positive_buckets: Vec<i64>,
    pub negative_buckets: Vec<i64>,
    /// Upper bucket boundaries for schema -53 (custom buckets); empty otherwise.
    pub custom_values: Vec<f64>,
}

/// A native histogram with float counts (Prometheus's `histogram.FloatHistogram`).
/// Bucket counts are absolute.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    /// Upper bucket boundaries for schema -53 (custom buckets); empty otherwise.
    pub custom_values: Vec<f64>,
}

impl Histogram {
    /// Lowest exponential schema Prometheus produces.
    pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
    /// Highest exponential schema Prometheus produces.
    pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;
    /// Lowest exponential schema reserved for future use (still readable).
    pub const EXPONENTIAL_SCHEMA_MIN_RESERVED: i32 = -9;
    /// Highest exponential schema reserved for future use; readers reduce schemas
    /// above [`Self::EXPONENTIAL_SCHEMA_MAX`] to it.
    pub const EXPONENTIAL_SCHEMA_MAX_RESERVED: i32 = 52;
    /// The schema of histograms with custom bucket boundaries (NHCB).
    pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

    /// Whether a reader accepts `schema` (Go's `histogram.IsKnownSchema`): custom
    /// buckets or an exponential schema within the reserved range -9..=52.
    pub fn is_known_schema(schema: i32) -> bool {
        schema == Self::CUSTOM_BUCKETS_SCHEMA
            || (Self::EXPONENTIAL_SCHEMA_MIN_RESERVED..=Self::EXPONENTIAL_SCHEMA_MAX_RESERVED)
                .contains(&schema)
    }

    /// Whether this histogram has custom bucket boundaries.
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == Self::CUSTOM_BUCKETS_SCHEMA
    }

    /// The same histogram with float counts and absolute bucket counts (Go's
    /// `Histogram.ToFloat`).
    pub fn to_float(&self) -> FloatHistogram {
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: absolute_counts(&self.positive_buckets),
            negative_buckets: absolute_counts(&self.negative_buckets),
            custom_values: self.custom_values.clone(),
        }
    }

    /// Lowers an exponential schema to `target_schema` by merging buckets (Go's
    /// `Histogram.ReduceResolution`). Does nothing for custom buckets or when
    /// `target_schema` is not lower than the current schema.
    pub fn reduce_resolution(&mut self, target_schema: i32) {
        if self.uses_custom_buckets()
            || target_schema == Self::CUSTOM_BUCKETS_SCHEMA
            || target_schema >= self.schema
        {
            return;
        }
        let (s, b) = reduce_resolution(
            &self.positive_spans,
            &self.positive_buckets,
            self.schema,
            target_schema,
            true,
        );
        self.positive_spans = s;
        self.positive_buckets = b;
        let (s, b) = reduce_resolution(
            &self.negative_spans,
            &self.negative_buckets,
            self.schema,
            target_schema,
            true,
        );
        self.negative_spans = s;
        self.negative_buckets = b;
        self.schema = target_schema;
    }
}

impl FloatHistogram {
    /// Whether this histogram has custom bucket boundaries.
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == Histogram::CUSTOM_BUCKETS_SCHEMA
    }

    /// Lowers an exponential schema to `target_schema` by merging buckets (Go's
    /// `FloatHistogram.ReduceResolution`). Does nothing for custom buckets or when
    /// `target_schema` is not lower than the current schema.
    pub fn reduce_resolution(&mut self, target_schema: i32) {
        if self.uses_custom_buckets()
            || target_schema == Histogram::CUSTOM_BUCKETS_SCHEMA
            || target_schema >= self.schema
        {
            return;
        }
        let (s, b) = reduce_resolution(
            &self.positive_spans,
            &self.positive_buckets,
            self.schema,
            target_schema,
            false,
        );
        self.positive_spans = s;
        self.positive_buckets = b;
        let (s, b) = reduce_resolution(
            &self.negative_spans,
            &self.negative_buckets,
            self.schema,
            target_schema,
            false,
        );
        self.negative_spans = s;
        self.negative_buckets = b;
        self.schema = target_schema;
    }
}

/// Delta-encoded integer bucket counts to absolute float counts.
fn absolute_counts(deltas: &[i64]) -> Vec<f64> {
    let mut current: i64 = 0;
    deltas
        .iter()
        .map(|d| {
            current = current.wrapping_add(*d);
            current as f64
        })
        .collect()
}

/// Bucket arithmetic shared by integer deltas and float absolute counts.
trait BucketCount: Copy + Default {
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
}

impl BucketCount for i64 {
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    fn sub(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
}

impl BucketCount for f64 {
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn sub(self, other: Self) -> Self {
        self - other
    }
}

/// Go's `targetIdx`: the bucket index in `target` schema of bucket `idx` in `origin`.
fn target_idx(idx: i32, origin: i32, target: i32) -> i32 {
    let shift = origin.wrapping_sub(target);
    let x = idx.wrapping_sub(1);
    // Go's arithmetic shift by a count >= 32 yields 0 or -1.
    let shifted = if (0..32).contains(&shift) {
        x >> shift
    } else if x < 0 {
        -1
    } else {
        0
    };
    shifted.wrapping_add(1)
}

/// Go's `reduceResolution`: merges the buckets of `spans`/`buckets` from schema
/// `origin` into schema `target` (< `origin`). `deltas` says whether `buckets` are
/// delta-encoded (integer histograms) or absolute (float histograms).
fn reduce_resolution<C: BucketCount>(
    spans: &[Span],
    buckets: &[C],
    origin: i32,
    target: i32,
    deltas: bool,
) -> (Vec<Span>, Vec<C>) {
    let mut target_spans: Vec<Span> = Vec::new();
    let mut target_buckets: Vec<C> = Vec::new();
    let mut bucket_idx: i32 = 0;
    let mut last_bucket_count = C::default();
    let mut last_target_idx: i32 = 0;
    let mut last_target_count = C::default();
    let mut counts = buckets.iter();
    for span in spans {
        bucket_idx = bucket_idx.wrapping_add(span.offset);
        for _ in 0..span.length {
            // Spans that promise more buckets than there are end the reduction.
            let Some(&count) = counts.next() else {
                return (target_spans, target_buckets);
            };
            let t_idx = target_idx(bucket_idx, origin, target);
            if target_spans.is_empty() {
                target_spans.push(Span {
                    offset: t_idx,
                    length: 1,
                });
                target_buckets.push(count);
                last_target_idx = t_idx;
                last_bucket_count = count;
                last_target_count = count;
            } else if last_target_idx == t_idx {
                if let Some(last) = target_buckets.last_mut() {
                    if deltas {
                        last_bucket_count = last_bucket_count.add(count);
                        *last = last.add(last_bucket_count);
                        last_target_count = last_target_count.add(last_bucket_count);
                    } else {
                        *last = last.add(count);
                    }
                }
            } else if last_target_idx.wrapping_add(1) <= t_idx {
                // A new target bucket: next to the previous one (same span) or
                // after a gap (new span).
                if last_target_idx.wrapping_add(1) == t_idx {
                    if let Some(s) = target_spans.last_mut() {
                        s.length = s.length.wrapping_add(1);
                    }
                } else {
                    target_spans.push(Span {
                        offset: t_idx.wrapping_sub(last_target_idx).wrapping_sub(1),
                        length: 1,
                    });
                }
                last_target_idx = t_idx;
                if deltas {
                    last_bucket_count = last_bucket_count.add(count);
                    target_buckets.push(last_bucket_count.sub(last_target_count));
                    last_target_count = last_bucket_count;
                } else {
                    target_buckets.push(count);
                }
            }
            bucket_idx = bucket_idx.wrapping_add(1);
        }
    }
    (target_spans, target_buckets)
}

/// `x * 2^exp` without overflow in the exponent arithmetic.
fn ldexp(mut x: f64, exp: i64) -> f64 {
    let mut e = exp.clamp(-2200, 2200);
    let two_1023 = f64::from_bits(0x7fe0_0000_0000_0000);
    let two_m1022 = f64::from_bits(0x0010_0000_0000_0000);
    while e > 1023 {
        x *= two_1023;
        e -= 1023;
    }
    while e < -1022 {
        x *= two_m1022;
        e += 1022;
    }
    x * f64::from_bits(((e + 1023) as u64) << 52)
}

/// Upper boundary of bucket `idx` (Go's `getBound`). For schemas 1..=8 Prometheus
/// uses a precomputed table; this computes the same values with `exp2`, which can
/// differ from the table in the last printed digit.
fn bucket_bound(idx: i32, schema: i32, custom: &[f64]) -> f64 {
    if schema == Histogram::CUSTOM_BUCKETS_SCHEMA {
        let idx = i64::from(idx);
        let len = custom.len() as i64;
        return if idx == len {
            f64::INFINITY
        } else if idx == -1 {
            f64::NEG_INFINITY
        } else if (0..len).contains(&idx) {
            custom[idx as usize]
        } else {
            f64::NAN
        };
    }
    if schema < 0 {
        let shift = -i64::from(schema);
        let exp = if shift >= 32 {
            match idx.signum() {
                1 => 4096,
                -1 => -4096,
                _ => 0,
            }
        } else {
            i64::from(idx) << shift
        };
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    if schema > 30 {
        return (f64::from(idx) / f64::from(schema).exp2()).exp2();
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let frac = (f64::from(frac_idx) / f64::from(1u32 << schema)).exp2() * 0.5;
    let exp = i64::from(idx >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// Upper boundary of bucket `idx` for `schema` (custom boundaries `custom` for
/// schema -53); Go's `getBound`.
pub fn bucket_upper_bound(idx: i32, schema: i32, custom: &[f64]) -> f64 {
    bucket_bound(idx, schema, custom)
}

/// Walks the buckets of `spans`, calling `f(index, position)` per bucket, as Go's
/// bucket iterator does (empty spans only shift the index). Stops early if the
/// spans promise more buckets than `n_buckets`.
fn for_each_bucket(spans: &[Span], n_buckets: usize, mut f: impl FnMut(i32, usize)) {
    let mut idx: i32 = 0;
    let mut pos = 0usize;
    for span in spans {
        idx = idx.wrapping_add(span.offset);
        for _ in 0..span.length {
            if pos >= n_buckets {
                return;
            }
            f(idx, pos);
            pos += 1;
            idx = idx.wrapping_add(1);
        }
    }
}

/// One bucket as Go's `Bucket.String` prints it (an inclusive bound gets a square
/// bracket: the lower one when negative, the upper one when positive).
fn write_bucket(f: &mut fmt::Formatter<'_>, lower: f64, upper: f64, count: &str) -> fmt::Result {
    write!(
        f,
        ", {}{},{}{}:{}",
        if lower < 0.0 { '[' } else { '(' },
        format_go_float(lower),
        format_go_float(upper),
        if upper > 0.0 { ']' } else { ')' },
        count
    )
}

/// The parts of a histogram that its text form shows.
struct Printable<'a> {
    count: String,
    sum: f64,
    schema: i32,
    custom: &'a [f64],
    /// Zero threshold and printed zero count, when the zero count is not 0.
    zero: Option<(f64, String)>,
    /// Non-empty buckets as (index, printed count), in index order.
    negative: Vec<(i32, String)>,
    positive: Vec<(i32, String)>,
}

impl Printable<'_> {
    /// Prometheus's `String()` layout: negative buckets (most negative first), the
    /// zero bucket, positive buckets.
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{count:{}, sum:{}",
            self.count,
            format_go_float(self.sum)
        )?;
        for (idx, c) in self.negative.iter().rev() {
            let lower = -bucket_bound(*idx, self.schema, self.custom);
            let upper = -bucket_bound(idx.wrapping_sub(1), self.schema, self.custom);
            write_bucket(f, lower, upper, c)?;
        }
        if let Some((threshold, c)) = &self.zero {
            write!(
                f,
                ", [{},{}]:{}",
                format_go_float(-threshold),
                format_go_float(*threshold),
                c
            )?;
        }
        for (idx, c) in &self.positive {
            let upper = bucket_bound(*idx, self.schema, self.custom);
            let lower = bucket_bound(idx.wrapping_sub(1), self.schema, self.custom);
            write_bucket(f, lower, upper, c)?;
        }
        f.write_str("}")
    }
}

fn float_buckets(spans: &[Span], buckets: &[f64]) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for_each_bucket(spans, buckets.len(), |idx, pos| {
        let c = buckets[pos];
        if c != 0.0 {
            out.push((idx, format_go_float(c)));
        }
    });
    out
}

fn int_buckets(spans: &[Span], deltas: &[i64]) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let mut current: i64 = 0;
    for_each_bucket(spans, deltas.len(), |idx, pos| {
        current = current.wrapping_add(deltas[pos]);
        if current != 0 {
            // Go prints the absolute count as a uint64.
            out.push((idx, (current as u64).to_string()));
        }
    });
    out
}

/// `{count:5, sum:10, [-1,-0.5):2, [-0.001,0.001]:1, (0.5,1]:2}` (Go's
/// `FloatHistogram.String`).
impl fmt::Display for FloatHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Printable {
            count: format_go_float(self.count),
            sum: self.sum,
            schema: self.schema,
            custom: &self.custom_values,
            zero: (self.zero_count != 0.0)
                .then(|| (self.zero_threshold, format_go_float(self.zero_count))),
            negative: float_buckets(&self.negative_spans, &self.negative_buckets),
            positive: float_buckets(&self.positive_spans, &self.positive_buckets),
        }
        .write(f)
    }
}

/// Go's `Histogram.String`: the float form with integer counts.
impl fmt::Display for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Printable {
            count: self.count.to_string(),
            sum: self.sum,
            schema: self.schema,
            custom: &self.custom_values,
            zero: (self.zero_count != 0)
                .then(|| (self.zero_threshold, self.zero_count.to_string())),
            negative: int_buckets(&self.negative_spans, &self.negative_buckets),
            positive: int_buckets(&self.positive_spans, &self.positive_buckets),
        }
        .write(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram {
        Histogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 1,
            count: 9,
            sum: 10.5,
            positive_spans: vec![
                Span {
                    offset: 0,
                    length: 2,
                },
                Span {
                    offset: 1,
                    length: 1,
                },
            ],
            positive_buckets: vec![2, -1, 3], // 2, 1, 4
            negative_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            negative_buckets: vec![2],
            ..Default::default()
        }
    }

    #[test]
    fn to_float_makes_counts_absolute() {
        let fh = sample().to_float();
        assert_eq!(fh.positive_buckets, vec![2.0, 1.0, 4.0]);
        assert_eq!(fh.negative_buckets, vec![2.0]);
        assert_eq!(fh.count, 9.0);
        assert_eq!(fh.zero_count, 1.0);
    }

    #[test]
    fn display_like_prometheus() {
        let h = sample();
        // Schema 0: bucket i is (2^(i-1), 2^i].
        let want =
            "{count:9, sum:10.5, [-1,-0.5):2, [-0.001,0.001]:1, (0.5,1]:2, (1,2]:1, (4,8]:4}";
        assert_eq!(h.to_string(), want);
        assert_eq!(h.to_float().to_string(), want);
        let nhcb = FloatHistogram {
            schema: Histogram::CUSTOM_BUCKETS_SCHEMA,
            count: 3.0,
            sum: 1.5,
            positive_spans: vec![Span {
                offset: 0,
                length: 3,
            }],
            positive_buckets: vec![1.0, 0.0, 2.0],
            custom_values: vec![0.5, 1.0],
            ..Default::default()
        };
        assert_eq!(
            nhcb.to_string(),
            "{count:3, sum:1.5, [-Inf,0.5]:1, (1,+Inf]:2}"
        );
    }

    #[test]
    fn exponential_bounds_close_to_go_table() {
        // A few entries of Go's exponentialBounds table (schema 1 and 8).
        assert_eq!(bucket_bound(1, 1, &[]), std::f64::consts::SQRT_2);
        assert!((bucket_bound(255, 8, &[]) - 2.0 * 0.9972960560854698).abs() < 1e-14);
        assert_eq!(bucket_bound(1024, 0, &[]), f64::MAX);
        assert_eq!(bucket_bound(-2, 0, &[]), 0.25);
        assert_eq!(bucket_bound(2, -2, &[]), 256.0);
    }

    #[test]
    fn reduce_resolution_merges_buckets() {
        // Schema 1 buckets 1..=4 (absolute 1, 2, 3, 4) become schema 0 buckets 1, 2
        // with absolute 3 and 7.
        let mut h = Histogram {
            schema: 1,
            count: 10,
            positive_spans: vec![Span {
                offset: 1,
                length: 4,
            }],
            positive_buckets: vec![1, 1, 1, 1],
            ..Default::default()
        };
        let mut fh = h.to_float();
        h.reduce_resolution(0);
        assert_eq!(h.schema, 0);
        assert_eq!(
            h.positive_spans,
            vec![Span {
                offset: 1,
                length: 2
            }]
        );
        assert_eq!(h.positive_buckets, vec![3, 4]);
        fh.reduce_resolution(0);
        assert_eq!(
            fh.positive_spans,
            vec![Span {
                offset: 1,
                length: 2
            }]
        );
        assert_eq!(fh.positive_buckets, vec![3.0, 7.0]);
        // Gaps become span offsets.
        let mut g = FloatHistogram {
            schema: 2,
            positive_spans: vec![
                Span {
                    offset: 0,
                    length: 1,
                },
                Span {
                    offset: 10,
                    length: 1,
                },
            ],
            positive_buckets: vec![1.0, 2.0],
            ..Default::default()
        };
        g.reduce_resolution(0);
        assert_eq!(
            g.positive_spans,
            vec![
                Span {
                    offset: 0,
                    length: 1
                },
                Span {
                    offset: 2,
                    length: 1
                }
            ]
        );
        assert_eq!(g.positive_buckets, vec![1.0, 2.0]);
    }

    #[test]
    fn known_schemas() {
        assert!(Histogram::is_known_schema(-53));
        assert!(Histogram::is_known_schema(-9));
        assert!(Histogram::is_known_schema(52));
        assert!(!Histogram::is_known_schema(53));
        assert!(!Histogram::is_known_schema(-10));
    }
}
