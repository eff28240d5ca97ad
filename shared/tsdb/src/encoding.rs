//! Byte-level primitives of the TSDB formats: big-endian integers, Go-style
//! varints, length-prefixed strings and CRC32-Castagnoli. [`Decbuf`] reads them from
//! untrusted bytes and returns errors (never panics); [`Encbuf`] writes them.

use crate::{Error, Result};

/// CRC32-Castagnoli, the checksum of every TSDB section and chunk.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Extends a running CRC32-Castagnoli over more bytes.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// A cursor over untrusted bytes. Every read checks bounds; `what` names the thing
/// being decoded in errors.
#[derive(Debug, Clone)]
pub struct Decbuf<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Decbuf<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Decbuf { buf, pos: 0, what }
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(
            self.what,
            format!(
                "{} (at byte {} of {})",
                reason.into(),
                self.pos,
                self.buf.len()
            ),
        )
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn skip(&mut self, n: usize) -> Result<()> {
        if n > self.remaining() {
            return Err(self.err(format!("cannot skip {n} bytes")));
        }
        self.pos += n;
        Ok(())
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!("need {n} bytes")));
        }
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub fn byte(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub fn be_u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn be_u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Go's `binary.Uvarint`: little-endian base-128, at most 10 bytes.
    pub fn uvarint(&mut self) -> Result<u64> {
        let mut x: u64 = 0;
        let mut s: u32 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos + i) else {
                return Err(self.err("truncated uvarint"));
            };
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(self.err("uvarint overflows 64 bits"));
                }
                self.pos += i + 1;
                return Ok(x | (u64::from(b) << s));
            }
            x |= u64::from(b & 0x7f) << s;
            s += 7;
        }
        Err(self.err("uvarint overflows 64 bits"))
    }

    /// Go's `binary.Varint`: zig-zag encoded signed varint.
    pub fn varint(&mut self) -> Result<i64> {
        let ux = self.uvarint()?;
        let mut x = (ux >> 1) as i64;
        if ux & 1 != 0 {
            x = !x;
        }
        Ok(x)
    }

    /// A uvarint that must fit in `u32`.
    pub fn uvarint32(&mut self) -> Result<u32> {
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| self.err(format!("value {v} does not fit 32 bits")))
    }

    /// A uvarint used as a length or count, checked against the bytes left so a
    /// hostile length cannot cause a huge allocation.
    pub fn uvarint_len(&mut self) -> Result<usize> {
        let v = self.uvarint()?;
        if v > self.remaining() as u64 {
            return Err(self.err(format!("length {v} exceeds the bytes left")));
        }
        Ok(v as usize)
    }

    /// A uvarint-length-prefixed byte string.
    pub fn uvarint_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.uvarint_len()?;
        self.bytes(n)
    }

    /// A uvarint-length-prefixed UTF-8 string (invalid UTF-8 is an error).
    pub fn uvarint_str(&mut self) -> Result<&'a str> {
        let b = self.uvarint_bytes()?;
        std::str::from_utf8(b).map_err(|_| self.err("string is not valid UTF-8"))
    }
}

/// A growable output buffer with the same primitives.
#[derive(Debug, Default, Clone)]
pub struct Encbuf {
    pub buf: Vec<u8>,
}

impl Encbuf {
    pub fn new() -> Self {
        Encbuf::default()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn reset(&mut self) {
        self.buf.clear();
    }

    pub fn put_byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    pub fn put_bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn put_be_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_be_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn put_varint(&mut self, v: i64) {
        let ux = ((v << 1) ^ (v >> 63)) as u64;
        self.put_uvarint(ux);
    }

    pub fn put_uvarint_str(&mut self, s: &str) {
        self.put_uvarint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Appends the CRC32-Castagnoli of `self.buf[from..]`, big-endian.
    pub fn put_crc32_of(&mut self, from: usize) {
        let c = crc32c(&self.buf[from..]);
        self.put_be_u32(c);
    }
}

/// Number of bytes `v` takes as a uvarint.
pub fn uvarint_size(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>()) {
            let mut e = Encbuf::new();
            e.put_uvarint(u);
            e.put_varint(i);
            prop_assert_eq!(e.len(), uvarint_size(u) + uvarint_size(((i << 1) ^ (i >> 63)) as u64));
            let mut d = Decbuf::new(&e.buf, "test");
            prop_assert_eq!(d.uvarint().unwrap(), u);
            prop_assert_eq!(d.varint().unwrap(), i);
            prop_assert_eq!(d.remaining(), 0);
        }

        #[test]
        fn decbuf_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Decbuf::new(&bytes, "fuzz");
            while d.remaining() > 0 {
                if d.uvarint_str().is_err() && d.varint().is_err() && d.be_u32().is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn known_varints() {
        let mut e = Encbuf::new();
        e.put_uvarint(300);
        assert_eq!(e.buf, vec![0xac, 0x02]);
        let mut d = Decbuf::new(&[0xff; 11], "x");
        assert!(d.uvarint().is_err());
        let mut d = Decbuf::new(&[0x80], "x");
        assert!(d.uvarint().is_err());
    }

    #[test]
    fn crc_known_value() {
        // CRC32-C of "123456789" is 0xE3069283.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
