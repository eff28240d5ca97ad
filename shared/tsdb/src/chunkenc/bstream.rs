//! Bit streams as Prometheus's `bstream` writes them (most significant bit first),
//! plus the bit-level codes built on them: Gorilla XOR floats and the "varbit"
//! integers of histogram chunks.

/// Appends bits to a byte vector, most significant bit first. The last byte's unused
/// low bits stay zero, as in Go's `bstream`.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    pub(crate) buf: Vec<u8>,
    /// Unused low bits of the last byte (0 when byte-aligned).
    free: u32,
}

impl BitWriter {
    /// A writer whose stream starts with `header` (byte-aligned).
    pub(crate) fn with_header(header: &[u8], capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(header.len()));
        buf.extend_from_slice(header);
        BitWriter { buf, free: 0 }
    }

    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes the `n` (0..=64) low bits of `v`.
    pub(crate) fn write_bits(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let mut n = n;
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        if self.free > 0 {
            let take = self.free.min(n);
            let bits = (v >> (n - take)) as u8 & ((1u16 << take) - 1) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= bits << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
        while n >= 8 {
            n -= 8;
            self.buf.push((v >> n) as u8);
        }
        if n > 0 {
            self.buf
                .push(((v << (8 - n)) as u8) & !((1u16 << (8 - n)) - 1) as u8);
            self.free = 8 - n;
        }
    }

    /// Continues a stream whose last byte has `free` unused low bits (cleared here).
    pub(crate) fn set_free_bits(&mut self, free: u32) {
        debug_assert!(free < 8);
        if let Some(last) = self.buf.last_mut() {
            if free > 0 {
                *last &= !((1u16 << free) - 1) as u8;
                self.free = free;
            }
        }
    }

    /// Writes whole bytes (at any bit position).
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        if self.free == 0 {
            self.buf.extend_from_slice(bytes);
        } else {
            for b in bytes {
                self.write_bits(u64::from(*b), 8);
            }
        }
    }

    pub(crate) fn write_uvarint(&mut self, mut v: u64) {
        let mut tmp = [0u8; 10];
        let mut i = 0;
        while v >= 0x80 {
            tmp[i] = (v as u8) | 0x80;
            v >>= 7;
            i += 1;
        }
        tmp[i] = v as u8;
        self.write_bytes(&tmp[..=i]);
    }

    pub(crate) fn write_varint(&mut self, v: i64) {
        self.write_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Reads bits from untrusted bytes, most significant bit first, through a 64-bit
/// buffer refilled a word at a time. Reads past the end return `None`; nothing
/// panics and nothing allocates.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load into `buf`.
    pos: usize,
    /// The top `valid` bits are the next unread bits; the bits below them are either
    /// zero or the stream's following bits (re-OR-ing them on refill is harmless).
    buf: u64,
    valid: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            buf: 0,
            valid: 0,
        }
    }

    /// Bits not yet read.
    pub(crate) fn remaining_bits(&self) -> u64 {
        u64::from(self.valid) + 8 * (self.data.len() - self.pos) as u64
    }

    /// Tops the buffer up to at least 57 valid bits, or all that is left.
    /// Requires `valid < 64`.
    #[inline(always)]
    fn refill(&mut self) {
        debug_assert!(self.valid < 64);
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.buf |= u64::from_be_bytes(word) >> self.valid;
            let bytes = (64 - self.valid) / 8;
            self.pos += bytes as usize;
            self.valid += bytes * 8;
        } else {
            while self.valid <= 56 {
                let Some(&b) = self.data.get(self.pos) else {
                    break;
                };
                self.buf |= u64::from(b) << (56 - self.valid);
                self.valid += 8;
                self.pos += 1;
            }
        }
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.valid && n < 64);
        self.buf <<= n;
        self.valid -= n;
    }

    /// The next `n` (1..=64) bits as the low bits of a `u64`.
    #[inline(always)]
    pub(crate) fn read_bits(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=64).contains(&n));
        if n > self.valid {
            self.refill();
            if n > self.valid {
                return self.read_bits_slow(n);
            }
        }
        let v = self.buf >> (64 - n);
        self.buf = self.buf.checked_shl(n).unwrap_or(0);
        self.valid -= n;
        Some(v)
    }

    /// After a refill more than 56 bits are buffered unless the data is nearly
    /// exhausted, so a wider read is split and a narrower one has hit the end.
    #[cold]
    fn read_bits_slow(&mut self, n: u32) -> Option<u64> {
        if n <= 56 || n > 64 {
            return None;
        }
        let hi = self.read_bits(n - 32)?;
        let lo = self.read_bits(32)?;
        Some((hi << 32) | lo)
    }

    #[inline(always)]
    pub(crate) fn read_bit(&mut self) -> Option<bool> {
        Some(self.read_bits(1)? == 1)
    }

    /// Counts `1` bits up to `max` (1..=8), consuming them and the terminating `0`
    /// (which is absent when `max` ones were read): the prefix codes of timestamps,
    /// XOR values and varbit integers.
    #[inline(always)]
    pub(crate) fn read_unary(&mut self, max: u32) -> Option<u32> {
        debug_assert!((1..=8).contains(&max));
        if self.valid < max {
            self.refill();
        }
        if self.valid >= max {
            let ones = self.buf.leading_ones().min(max);
            self.consume(if ones < max { ones + 1 } else { max });
            return Some(ones);
        }
        let mut ones = 0;
        while ones < max {
            if !self.read_bit()? {
                break;
            }
            ones += 1;
        }
        Some(ones)
    }

    /// A byte-aligned-or-not Go `binary.ReadUvarint` over the bit stream.
    pub(crate) fn read_uvarint(&mut self) -> Result<u64, &'static str> {
        let mut x: u64 = 0;
        let mut s: u32 = 0;
        for i in 0..10 {
            let b = self.read_bits(8).ok_or("truncated varint")?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err("varint overflows 64 bits");
                }
                return Ok(x | (b << s));
            }
            x |= (b & 0x7f) << s;
            s += 7;
        }
        Err("varint overflows 64 bits")
    }

    pub(crate) fn read_varint(&mut self) -> Result<i64, &'static str> {
        let ux = self.read_uvarint()?;
        let x = (ux >> 1) as i64;
        Ok(if ux & 1 != 0 { !x } else { x })
    }
}

/// Whether `x` fits the `nbits`-bit two's-complement range Prometheus uses for its
/// bucketed codes: `-(2^(nbits-1) - 1) ..= 2^(nbits-1)` (Go's `bitRange`).
#[inline]
pub(crate) fn bit_range(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Sign-extends an `sz`-bit value the way Prometheus's readers do: values above
/// `2^(sz-1)` are negative.
#[inline(always)]
pub(crate) fn sign_extend(bits: u64, sz: u32) -> i64 {
    if bits > (1u64 << (sz - 1)) {
        bits.wrapping_sub(1u64 << sz) as i64
    } else {
        bits as i64
    }
}

/// Gorilla XOR of `new` against `prev`, with the leading/trailing-zero window
/// `leading`/`trailing` (0xff leading means "no window yet"). Go's `xorWrite`.
pub(crate) fn xor_write(
    w: &mut BitWriter,
    new: u64,
    prev: u64,
    leading: &mut u8,
    trailing: &mut u8,
) {
    let delta = new ^ prev;
    if delta == 0 {
        w.write_bit(false);
        return;
    }
    w.write_bit(true);
    let mut new_leading = delta.leading_zeros() as u8;
    let new_trailing = delta.trailing_zeros() as u8;
    // Leading zeros are stored in 5 bits.
    if new_leading >= 32 {
        new_leading = 31;
    }
    if *leading != 0xff && new_leading >= *leading && new_trailing >= *trailing {
        w.write_bit(false);
        w.write_bits(
            delta >> *trailing,
            64 - u32::from(*leading) - u32::from(*trailing),
        );
        return;
    }
    *leading = new_leading;
    *trailing = new_trailing;
    w.write_bit(true);
    w.write_bits(u64::from(new_leading), 5);
    // 64 significant bits are written as 0 (they do not fit 6 bits, and 0 never
    // occurs otherwise).
    let sigbits = 64 - u32::from(new_leading) - u32::from(new_trailing);
    w.write_bits(u64::from(sigbits), 6);
    w.write_bits(delta >> new_trailing, sigbits);
}

/// Why an XOR value did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XorError {
    Eof,
    BadWindow,
}

/// Reads a value written by [`xor_write`], updating `value` (as bits) and the
/// window; returns whether a new window was read. A window that does not fit 64
/// bits is corrupt data.
#[inline(always)]
pub(crate) fn xor_read(
    r: &mut BitReader<'_>,
    value: &mut u64,
    leading: &mut u8,
    trailing: &mut u8,
) -> Result<bool, XorError> {
    match r.read_unary(2).ok_or(XorError::Eof)? {
        0 => Ok(false),
        1 => {
            // Reuse the window; `leading + trailing < 64` always holds here.
            let mbits = 64 - u32::from(*leading) - u32::from(*trailing);
            let bits = r.read_bits(mbits).ok_or(XorError::Eof)?;
            *value ^= bits << *trailing;
            Ok(false)
        }
        _ => {
            let b = r.read_bits(11).ok_or(XorError::Eof)?;
            let new_leading = (b >> 6) as u32;
            let mut mbits = (b & 0x3f) as u32;
            if mbits == 0 {
                mbits = 64;
            }
            if new_leading + mbits > 64 {
                return Err(XorError::BadWindow);
            }
            let new_trailing = 64 - new_leading - mbits;
            *leading = new_leading as u8;
            *trailing = new_trailing as u8;
            let bits = r.read_bits(mbits).ok_or(XorError::Eof)?;
            *value ^= bits << new_trailing;
            Ok(true)
        }
    }
}

/// Go's `putVarbitInt`: a signed integer in 1 to 72 bits.
pub(crate) fn put_varbit_int(w: &mut BitWriter, v: i64) {
    let u = v as u64;
    if v == 0 {
        w.write_bit(false);
    } else if bit_range(v, 3) {
        w.write_bits(0b10, 2);
        w.write_bits(u, 3);
    } else if bit_range(v, 6) {
        w.write_bits(0b110, 3);
        w.write_bits(u, 6);
    } else if bit_range(v, 9) {
        w.write_bits(0b1110, 4);
        w.write_bits(u, 9);
    } else if bit_range(v, 12) {
        w.write_bits(0b11110, 5);
        w.write_bits(u, 12);
    } else if bit_range(v, 18) {
        w.write_bits(0b111110, 6);
        w.write_bits(u, 18);
    } else if bit_range(v, 25) {
        w.write_bits(0b1111110, 7);
        w.write_bits(u, 25);
    } else if bit_range(v, 56) {
        w.write_bits(0b11111110, 8);
        w.write_bits(u, 56);
    } else {
        w.write_bits(0b11111111, 8);
        w.write_bits(u, 64);
    }
}

/// Payload widths of the varbit codes, by the number of leading `1` bits.
const VARBIT_SIZES: [u32; 9] = [0, 3, 6, 9, 12, 18, 25, 56, 64];

/// Go's `readVarbitInt`.
#[inline]
pub(crate) fn read_varbit_int(r: &mut BitReader<'_>) -> Option<i64> {
    let ones = r.read_unary(8)?;
    match VARBIT_SIZES[ones as usize] {
        0 => Some(0),
        64 => Some(r.read_bits(64)? as i64),
        sz => Some(sign_extend(r.read_bits(sz)?, sz)),
    }
}

/// Go's `putVarbitUint`: same codes as [`put_varbit_int`], unsigned payloads.
pub(crate) fn put_varbit_uint(w: &mut BitWriter, v: u64) {
    let fits = |n: u32| v.leading_zeros() >= 64 - n;
    if v == 0 {
        w.write_bit(false);
    } else if fits(3) {
        w.write_bits(0b10, 2);
        w.write_bits(v, 3);
    } else if fits(6) {
        w.write_bits(0b110, 3);
        w.write_bits(v, 6);
    } else if fits(9) {
        w.write_bits(0b1110, 4);
        w.write_bits(v, 9);
    } else if fits(12) {
        w.write_bits(0b11110, 5);
        w.write_bits(v, 12);
    } else if fits(18) {
        w.write_bits(0b111110, 6);
        w.write_bits(v, 18);
    } else if fits(25) {
        w.write_bits(0b1111110, 7);
        w.write_bits(v, 25);
    } else if fits(56) {
        w.write_bits(0b11111110, 8);
        w.write_bits(v, 56);
    } else {
        w.write_bits(0b11111111, 8);
        w.write_bits(v, 64);
    }
}

/// Go's `readVarbitUint`.
#[inline]
pub(crate) fn read_varbit_uint(r: &mut BitReader<'_>) -> Option<u64> {
    let ones = r.read_unary(8)?;
    match VARBIT_SIZES[ones as usize] {
        0 => Some(0),
        sz => r.read_bits(sz),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writer_matches_go_bstream_layout() {
        let mut w = BitWriter::default();
        w.write_bit(true);
        w.write_bits(0b01, 2);
        w.write_bits(0xAB, 8);
        w.write_bits(0x3, 2);
        assert_eq!(w.buf, vec![0b1011_0101, 0b0111_1000]);
        w.write_bytes(&[0xFF]);
        assert_eq!(w.buf, vec![0b1011_0101, 0b0111_1111, 0b1111_1000]);
    }

    #[test]
    fn reader_reports_end() {
        let mut r = BitReader::new(&[0xF0]);
        assert_eq!(r.read_bits(4), Some(0xF));
        assert_eq!(r.read_bits(5), None);
        let mut r = BitReader::new(&[0x80]);
        assert_eq!(r.read_unary(4), Some(1));
        assert_eq!(r.read_unary(8), Some(0));
        assert_eq!(r.remaining_bits(), 5);
        let mut r = BitReader::new(&[]);
        assert_eq!(r.read_unary(1), None);
    }

    proptest! {
        #[test]
        fn bits_round_trip(items in proptest::collection::vec((any::<u64>(), 1u32..=64), 0..200)) {
            let mut w = BitWriter::default();
            for (v, n) in &items {
                w.write_bits(*v, *n);
            }
            let mut r = BitReader::new(&w.buf);
            for (v, n) in &items {
                let want = if *n == 64 { *v } else { v & ((1u64 << n) - 1) };
                prop_assert_eq!(r.read_bits(*n), Some(want));
            }
            prop_assert!(r.remaining_bits() < 8);
        }

        #[test]
        fn varbits_round_trip(ints in proptest::collection::vec(any::<i64>(), 0..50),
                              small in proptest::collection::vec(-5000i64..5000, 0..50),
                              uints in proptest::collection::vec(any::<u64>(), 0..50)) {
            let mut w = BitWriter::default();
            for v in ints.iter().chain(&small) {
                put_varbit_int(&mut w, *v);
            }
            for v in &uints {
                put_varbit_uint(&mut w, *v);
                w.write_uvarint(*v);
                w.write_varint(*v as i64);
            }
            let mut r = BitReader::new(&w.buf);
            for v in ints.iter().chain(&small) {
                prop_assert_eq!(read_varbit_int(&mut r), Some(*v));
            }
            for v in &uints {
                prop_assert_eq!(read_varbit_uint(&mut r), Some(*v));
                prop_assert_eq!(r.read_uvarint(), Ok(*v));
                prop_assert_eq!(r.read_varint(), Ok(*v as i64));
            }
        }
    }
}
