//! A sorted, deduplicated string table held in one buffer.

use std::cmp::Ordering;

use crate::{Error, Result};

/// The symbol table of an index: sorted unique UTF-8 strings addressed by ordinal.
///
/// All strings live in one buffer with one `u32` end offset per symbol, so a block
/// with millions of symbols costs its string bytes plus 4 bytes a symbol. Lookup by
/// ordinal is O(1); lookup of a string's ordinal is a binary search.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Symbols {
    buf: Vec<u8>,
    /// `ends[i]` is the end of symbol `i` in `buf`; it starts at `ends[i - 1]` (or 0).
    ends: Vec<u32>,
}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbols")
            .field("len", &self.ends.len())
            .field("bytes", &self.buf.len())
            .finish()
    }
}

impl Symbols {
    pub(crate) fn with_capacity(symbols: usize, bytes: usize) -> Self {
        Symbols {
            buf: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(symbols),
        }
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes of all symbols (without any length prefixes).
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Approximate heap memory held.
    pub fn heap_size(&self) -> usize {
        self.buf.capacity() + self.ends.capacity() * 4
    }

    fn bytes_at(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.buf.get(start..end)
    }

    /// The symbol with ordinal `i`.
    pub fn get(&self, i: u32) -> Option<&str> {
        // Every symbol was checked to be UTF-8 when it was added.
        std::str::from_utf8(self.bytes_at(i as usize)?).ok()
    }

    /// The ordinal of `s`, if it is in the table.
    pub fn find(&self, s: &str) -> Option<u32> {
        self.find_from(s, 0)
    }

    /// The ordinal of `s`, searching only ordinals `>= from` (a hint for ascending
    /// lookups).
    pub fn find_from(&self, s: &str, from: u32) -> Option<u32> {
        self.find_bytes_from(s.as_bytes(), from)
    }

    pub(crate) fn find_bytes_from(&self, s: &[u8], from: u32) -> Option<u32> {
        let (mut lo, mut hi) = (from as usize, self.ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.bytes_at(mid)?.cmp(s) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return u32::try_from(mid).ok(),
            }
        }
        None
    }

    /// The symbols in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|i| self.get(i as u32).unwrap_or_default())
    }

    /// Appends a symbol, which must be valid UTF-8 and sort strictly after the last
    /// one. `what` names the source for errors; `invalid` picks InvalidInput (caller
    /// data) over Corrupt (file data).
    pub(crate) fn push(&mut self, s: &[u8], what: &'static str, invalid: bool) -> Result<()> {
        let err = |reason: String| {
            if invalid {
                Error::invalid(what, reason)
            } else {
                Error::corrupt(what, reason)
            }
        };
        if std::str::from_utf8(s).is_err() {
            return Err(err(format!("symbol {} is not valid UTF-8", self.len())));
        }
        if let Some(last) = self.len().checked_sub(1).and_then(|i| self.bytes_at(i)) {
            if last >= s {
                return Err(err(format!(
                    "symbols not sorted and unique: {:?} after {:?}",
                    String::from_utf8_lossy(s),
                    String::from_utf8_lossy(last)
                )));
            }
        }
        if self.ends.len() >= u32::MAX as usize {
            return Err(err("more than 2^32-1 symbols".into()));
        }
        let end = u32::try_from(self.buf.len() + s.len())
            .map_err(|_| err("symbols exceed 4 GiB".into()))?;
        self.buf.extend_from_slice(s);
        self.ends.push(end);
        Ok(())
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}
