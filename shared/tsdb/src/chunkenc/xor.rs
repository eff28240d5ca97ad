//! The XOR chunk of float samples (Prometheus's `XORChunk`, Gorilla compression).
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream: the first sample as
//! a varint timestamp and the 64 value bits; the second as a uvarint timestamp
//! delta and an XOR value; every later one as a delta-of-delta timestamp (`0`, or
//! prefix `10`/`110`/`1110`/`1111` with 14/17/20/64 bits) and an XOR value (`0`:
//! unchanged; `10`: XOR bits inside the previous leading/trailing-zero window; `11`:
//! 5 bits leading zeros, 6 bits significant-bit count, the bits).

use super::bstream::{bit_range, sign_extend, xor_read, xor_write, BitReader, BitWriter, XorError};
use crate::{Error, Result};

const WHAT: &str = "XOR chunk";

/// Samples a chunk can hold: the count is 16 bits.
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// An XOR chunk being written. [`XorChunk::bytes`] is the chunk data exactly as
/// Prometheus stores it (count header included).
#[derive(Debug, Clone)]
pub struct XorChunk {
    w: BitWriter,
    num: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        XorChunk::new()
    }
}

impl XorChunk {
    /// An empty chunk.
    pub fn new() -> Self {
        XorChunk {
            w: BitWriter::with_header(&[0, 0], 128),
            num: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0xff,
            trailing: 0,
        }
    }

    /// Continues a chunk from its bytes (Go's `XORChunk.Appender` on existing data):
    /// decodes it to recover the encoder state. Corrupt data is an error.
    ///
    /// Appending then continues exactly as if all samples had been appended to
    /// this value (the bytes equal those of an uninterrupted encoding).
    pub fn from_bytes(data: &[u8]) -> Result<XorChunk> {
        let mut it = XorIterator::new(data)?;
        for s in it.by_ref() {
            s?;
        }
        let mut rest = it.r.remaining_bits();
        let mut data = data;
        // Prometheus before 3.0 (bstream's writeByte bug) could leave one spare
        // zero byte at the end.
        if (8..16).contains(&rest) && data.last() == Some(&0) {
            data = &data[..data.len() - 1];
            rest -= 8;
        }
        if rest >= 8 {
            return Err(Error::corrupt(
                WHAT,
                format!("{} bytes after the last sample", rest / 8),
            ));
        }
        let mut w = BitWriter::with_header(data, data.len() + 64);
        w.set_free_bits(rest as u32);
        Ok(XorChunk {
            w,
            num: it.total,
            t: it.t,
            v: it.v,
            t_delta: it.t_delta,
            // An encoder that never opened a leading/trailing-zero window still
            // has none.
            leading: if it.window_set { it.leading } else { 0xff },
            trailing: it.trailing,
        })
    }

    /// Number of samples in the chunk.
    pub fn num_samples(&self) -> usize {
        usize::from(self.num)
    }

    /// Whether the chunk holds [`MAX_SAMPLES`] samples.
    pub fn is_full(&self) -> bool {
        self.num == u16::MAX
    }

    /// The chunk data as Prometheus stores it.
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// Appends a sample. Timestamps need not increase (the encoding wraps deltas),
    /// though Prometheus always appends in order.
    ///
    /// # Panics
    /// If the chunk is full ([`MAX_SAMPLES`]; Prometheus cuts chunks at 120).
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(!self.is_full(), "XOR chunk is full ({MAX_SAMPLES} samples)");
        let vbits = v.to_bits();
        let mut t_delta = 0u64;
        match self.num {
            0 => {
                self.w.write_varint(t);
                self.w.write_bits(vbits, 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                self.w.write_uvarint(t_delta);
                xor_write(
                    &mut self.w,
                    vbits,
                    self.v,
                    &mut self.leading,
                    &mut self.trailing,
                );
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.w.write_bit(false);
                } else if bit_range(dod, 14) {
                    self.w.write_bits(0b10, 2);
                    self.w.write_bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    self.w.write_bits(0b110, 3);
                    self.w.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    self.w.write_bits(0b1110, 4);
                    self.w.write_bits(dod as u64, 20);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                xor_write(
                    &mut self.w,
                    vbits,
                    self.v,
                    &mut self.leading,
                    &mut self.trailing,
                );
            }
        }
        self.t = t;
        self.v = vbits;
        self.t_delta = t_delta;
        self.num += 1;
        let n = self.num.to_be_bytes();
        self.w.buf[0] = n[0];
        self.w.buf[1] = n[1];
    }
}

/// Iterates the samples of XOR chunk data, yielding `(timestamp, value)`.
///
/// Corrupt data yields one `Err` and then ends. No allocation; at most the 65535
/// samples the header announces.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    /// Whether a leading/trailing-zero window has been read (for `from_bytes`).
    window_set: bool,
    failed: bool,
}

impl<'a> XorIterator<'a> {
    /// An iterator over chunk `data` (as stored: count header first). Data shorter
    /// than the header is an error.
    pub fn new(data: &'a [u8]) -> Result<XorIterator<'a>> {
        let (header, stream) = match data {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
            _ => {
                return Err(Error::corrupt(
                    WHAT,
                    format!("{} bytes, shorter than the 2-byte header", data.len()),
                ))
            }
        };
        Ok(XorIterator {
            r: BitReader::new(stream),
            total: header,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            window_set: false,
            failed: false,
        })
    }

    /// Number of samples the chunk header announces.
    pub fn num_samples(&self) -> usize {
        usize::from(self.total)
    }

    fn fail(&mut self, reason: impl Into<String>) -> Option<Result<(i64, f64)>> {
        self.failed = true;
        Some(Err(Error::corrupt(
            WHAT,
            format!(
                "sample {} of {}: {}",
                self.read + 1,
                self.total,
                reason.into()
            ),
        )))
    }

    #[inline(always)]
    fn read_value(&mut self) -> std::result::Result<(), XorError> {
        if xor_read(
            &mut self.r,
            &mut self.v,
            &mut self.leading,
            &mut self.trailing,
        )? {
            self.window_set = true;
        }
        Ok(())
    }

    #[cold]
    fn next_first_two(&mut self) -> Option<Result<(i64, f64)>> {
        if self.read == 0 {
            let t = match self.r.read_varint() {
                Ok(t) => t,
                Err(e) => return self.fail(e),
            };
            let Some(v) = self.r.read_bits(64) else {
                return self.fail("truncated value");
            };
            self.t = t;
            self.v = v;
        } else {
            let d = match self.r.read_uvarint() {
                Ok(d) => d,
                Err(e) => return self.fail(e),
            };
            self.t_delta = d;
            self.t = self.t.wrapping_add(d as i64);
            if let Err(e) = self.read_value() {
                return self.fail(xor_reason(e));
            }
        }
        self.read += 1;
        Some(Ok((self.t, f64::from_bits(self.v))))
    }
}

fn xor_reason(e: XorError) -> &'static str {
    match e {
        XorError::Eof => "truncated value",
        XorError::BadWindow => "leading zeros and significant bits exceed 64",
    }
}

impl Iterator for XorIterator<'_> {
    type Item = Result<(i64, f64)>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.read >= self.total || self.failed {
            return None;
        }
        if self.read < 2 {
            return self.next_first_two();
        }
        let dod = match self.r.read_unary(4) {
            Some(0) => 0,
            Some(1) => match self.r.read_bits(14) {
                Some(b) => sign_extend(b, 14),
                None => return self.fail("truncated timestamp"),
            },
            Some(2) => match self.r.read_bits(17) {
                Some(b) => sign_extend(b, 17),
                None => return self.fail("truncated timestamp"),
            },
            Some(3) => match self.r.read_bits(20) {
                Some(b) => sign_extend(b, 20),
                None => return self.fail("truncated timestamp"),
            },
            Some(_) => match self.r.read_bits(64) {
                Some(b) => b as i64,
                None => return self.fail("truncated timestamp"),
            },
            None => return self.fail("truncated timestamp"),
        };
        self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
        self.t = self.t.wrapping_add(self.t_delta as i64);
        if let Err(e) = self.read_value() {
            return self.fail(xor_reason(e));
        }
        self.read += 1;
        Some(Ok((self.t, f64::from_bits(self.v))))
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
    use proptest::prelude::*;

    const STALE: u64 = model::STALE_NAN_BITS;

    fn encode(samples: &[(i64, f64)]) -> XorChunk {
        let mut c = XorChunk::new();
        for (t, v) in samples {
            c.append(*t, *v);
        }
        c
    }

    fn decode(data: &[u8]) -> Vec<(i64, u64)> {
        XorIterator::new(data)
            .unwrap()
            .map(|s| s.map(|(t, v)| (t, v.to_bits())).unwrap())
            .collect()
    }

    /// Built by hand from Go's `xorAppender.Append`:
    /// - header: count 3 → `00 03`
    /// - sample 1: varint(1000) = zigzag 2000 = `d0 0f`; 1.0 = `3f f0 00 00 00 00 00 00`
    /// - sample 2: uvarint(1000) = `e8 07`; value unchanged → bit `0`
    /// - sample 3: dod 0 → bit `0`; 2.0 ^ 1.0 = 0x7ff0_0000_0000_0000 (1 leading, 52
    ///   trailing zeros, 11 significant bits): `1` `1` `00001` `001011` `11111111111`
    ///
    /// Bits after sample 2: 0 0 1 1 00001 001011 11111111111 + 3 padding zeros
    /// = 0011_0000 1001_0111 1111_1111 1100_0000 → `30 97 ff c0`.
    #[test]
    fn known_bytes() {
        let c = encode(&[(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
        assert_eq!(
            c.bytes(),
            &[
                0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07, 0x30, 0x97, 0xff,
                0xc0
            ]
        );
        assert_eq!(
            decode(c.bytes()),
            vec![
                (1000, 1f64.to_bits()),
                (2000, 1f64.to_bits()),
                (3000, 2f64.to_bits())
            ]
        );
    }

    #[test]
    fn empty_and_single() {
        let c = XorChunk::new();
        assert_eq!(c.bytes(), &[0, 0]);
        assert!(decode(c.bytes()).is_empty());
        let c = encode(&[(-5, f64::from_bits(STALE))]);
        assert_eq!(decode(c.bytes()), vec![(-5, STALE)]);
        assert!(XorIterator::new(&[0]).is_err());
    }

    #[test]
    fn timestamp_buckets() {
        // Deltas whose delta-of-delta hits each size class and its edges.
        let dods: [i64; 12] = [
            0, 1, -1, 8192, -8191, 8193, 65536, -65535, 65537, 524288, -524287, 524289,
        ];
        let mut t = 0i64;
        let mut delta = 15_000i64;
        let mut samples = vec![(t, 0.0)];
        for d in dods {
            delta += d;
            t += delta;
            samples.push((t, t as f64));
        }
        samples.push((i64::MAX, 1.0));
        samples.push((i64::MIN, 2.0));
        let c = encode(&samples);
        let got = decode(c.bytes());
        let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn continue_from_bytes() {
        let samples: Vec<(i64, f64)> = (0..50)
            .map(|i| (i * 1000 + i % 3, (i as f64).sqrt()))
            .collect();
        let whole = encode(&samples);
        for split in [0, 1, 2, 3, 17, 50] {
            let mut c = XorChunk::from_bytes(encode(&samples[..split]).bytes()).unwrap();
            for (t, v) in &samples[split..] {
                c.append(*t, *v);
            }
            assert_eq!(c.bytes(), whole.bytes(), "split at {split}");
        }
    }

    #[test]
    fn continue_prometheus_2_chunk_with_spare_byte() {
        let samples: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, i as f64)).collect();
        let whole = encode(&samples);
        let mut old = encode(&samples[..5]).bytes().to_vec();
        old.push(0);
        let mut c = XorChunk::from_bytes(&old).unwrap();
        for (t, v) in &samples[5..] {
            c.append(*t, *v);
        }
        assert_eq!(c.bytes(), whole.bytes());
        old.push(0);
        assert!(XorChunk::from_bytes(&old).is_err());
    }

    #[test]
    fn truncation_at_every_byte_errors() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (i * 15_000, (i as f64 * 0.37).sin()))
            .collect();
        let c = encode(&samples);
        let data = c.bytes();
        for cut in 0..data.len() {
            let Ok(it) = XorIterator::new(&data[..cut]) else {
                assert!(cut < 2);
                continue;
            };
            let results: Vec<_> = it.collect();
            assert!(results.len() <= 120);
            assert!(results.last().is_some_and(|r| r.is_err()), "cut at {cut}");
        }
    }

    #[test]
    fn bad_window_is_an_error() {
        // Header 2 samples; sample 1 = t 0, v 0; sample 2: delta 0, control 11,
        // leading 31, sigbits 63 (31 + 63 > 64).
        let mut w = BitWriter::with_header(&[0, 2], 16);
        w.write_varint(0);
        w.write_bits(0, 64);
        w.write_uvarint(0);
        w.write_bits(0b11, 2);
        w.write_bits(31, 5);
        w.write_bits(63, 6);
        w.write_bits(u64::MAX, 64);
        let r: Vec<_> = XorIterator::new(&w.buf).unwrap().collect();
        assert_eq!(r.len(), 2);
        assert!(r[1].is_err());
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::from_bits(STALE)),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            (0i64..1000).prop_map(|i| i as f64),
        ]
    }

    fn timestamp_step() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(15_000i64),
            14_990i64..15_010,
            -100_000i64..100_000,
            any::<i64>(),
            Just(0),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(start in any::<i64>(),
                      steps in proptest::collection::vec((timestamp_step(), value()), 0..300)) {
            let mut t = start;
            let mut samples = Vec::new();
            for (d, v) in steps {
                samples.push((t, v));
                t = t.wrapping_add(d);
            }
            let c = encode(&samples);
            prop_assert_eq!(c.num_samples(), samples.len());
            let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            prop_assert_eq!(decode(c.bytes()), want);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(it) = XorIterator::new(&data) {
                let n = it.count();
                prop_assert!(n <= 65535);
            }
        }

        #[test]
        fn corrupted_chunks_never_panic(
            steps in proptest::collection::vec((timestamp_step(), value()), 1..150),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut t = 0i64;
            let mut c = XorChunk::new();
            for (d, v) in steps {
                c.append(t, v);
                t = t.wrapping_add(d);
            }
            let mut data = c.bytes().to_vec();
            for (i, x) in flips {
                let i = i % data.len();
                data[i] ^= x;
            }
            if let Ok(it) = XorIterator::new(&data) {
                for s in it {
                    if s.is_err() {
                        break;
                    }
                }
            }
        }
    }

    /// Encode/decode throughput; run with
    /// `cargo test -p tsdb --release --lib xor_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn xor_throughput() {
        let series = 10_000;
        let mut chunks = Vec::with_capacity(series);
        let start = std::time::Instant::now();
        let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
        for s in 0..series {
            let mut c = XorChunk::new();
            let mut v = s as f64;
            for i in 0..120i64 {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                // A counter: integer increments, as most Prometheus series are.
                v += (rng_state % 100) as f64;
                c.append(1_600_000_000_000 + i * 15_000 + (rng_state % 3) as i64, v);
            }
            chunks.push(c);
        }
        let enc = start.elapsed();
        let samples = (series * 120) as f64;
        let bytes: usize = chunks.iter().map(|c| c.bytes().len()).sum();
        let start = std::time::Instant::now();
        let mut sum = 0f64;
        for c in &chunks {
            for s in XorIterator::new(c.bytes()).unwrap() {
                sum += s.unwrap().1;
            }
        }
        let dec = start.elapsed();
        println!(
            "XOR: {:.1} bytes/sample; encode {:.1} M samples/s; decode {:.1} M samples/s (checksum {sum})",
            bytes as f64 / samples,
            samples / enc.as_secs_f64() / 1e6,
            samples / dec.as_secs_f64() / 1e6
        );
    }
}
