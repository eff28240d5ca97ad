//! Chunk encodings, byte-compatible with Prometheus's `tsdb/chunkenc`.
//!
//! - [`XorChunk`] / [`XorIterator`]: float samples (Gorilla XOR), the hot path of
//!   every query. The iterator reads through a 64-bit buffer and never allocates.
//! - [`HistogramChunk`] / [`HistogramIterator`]: integer native histograms.
//! - [`FloatHistogramChunk`] / [`FloatHistogramIterator`]: float native histograms.
//! - [`iter_chunk`]: any encoding by its on-disk byte, yielding [`SampleValue`]s.
//!
//! Chunk data here is what Prometheus calls `Chunk.Bytes()`: the header (sample
//! count, plus a flags byte for histograms) and the bit stream, without the
//! segment-file record around it (see [`crate::chunks`]). Decoders take untrusted
//! bytes: corrupt data yields an `Err` (after which iteration ends), never a panic,
//! an endless loop or an allocation larger than the data justifies.
//!
//! Encoders produce the bytes Prometheus's appenders produce for the same samples.
//! The histogram encoders keep one bucket layout per chunk and refuse samples for
//! which Prometheus would re-code or cut the chunk; callers start a new chunk.

mod bstream;
mod float_histogram;
mod histogram;
mod xor;

pub use float_histogram::{FloatHistogramChunk, FloatHistogramIterator};
pub use histogram::{HistogramChunk, HistogramIterator};
pub use xor::{XorChunk, XorIterator, MAX_SAMPLES};

use model::{FloatHistogram, Histogram};

use crate::{Error, Result};

/// Thanos's encoding byte for downsampled aggregate chunks (`AggrChunk`).
pub const ENCODING_AGGR: u8 = 0xFF;

/// The chunk encodings of Prometheus blocks, as the encoding byte on disk.
/// (On the StoreAPI wire the numbering is 0-based: XOR = 0.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    Xor = 1,
    Histogram = 2,
    FloatHistogram = 3,
}

impl Encoding {
    /// The encoding of an on-disk encoding byte; anything else (including Thanos's
    /// [`ENCODING_AGGR`]) is [`Error::Unsupported`].
    pub fn from_u8(b: u8) -> Result<Encoding> {
        match b {
            1 => Ok(Encoding::Xor),
            2 => Ok(Encoding::Histogram),
            3 => Ok(Encoding::FloatHistogram),
            ENCODING_AGGR => Err(Error::Unsupported {
                what: "chunk encoding".into(),
                detail: "0xFF (Thanos aggregate chunk)".into(),
            }),
            _ => Err(Error::Unsupported {
                what: "chunk encoding".into(),
                detail: format!("{b:#04x}"),
            }),
        }
    }

    /// Prometheus's name (`XOR`, `histogram`, `floathistogram`).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Xor => "XOR",
            Encoding::Histogram => "histogram",
            Encoding::FloatHistogram => "floathistogram",
        }
    }
}

/// The top two bits of a histogram chunk's flags byte: what is known about a
/// counter reset between the previous chunk and this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum CounterResetHeader {
    /// Not known; readers must detect resets themselves.
    #[default]
    Unknown = 0b0000_0000,
    /// The chunk was cut because of a counter reset.
    CounterReset = 0b1000_0000,
    /// The chunk was cut without a counter reset.
    NotCounterReset = 0b0100_0000,
    /// The chunk holds gauge histograms.
    Gauge = 0b1100_0000,
}

impl CounterResetHeader {
    /// The bits of the flags byte that hold the header.
    pub const MASK: u8 = 0b1100_0000;

    /// The header in a flags byte (other bits ignored).
    pub fn from_flags(flags: u8) -> CounterResetHeader {
        match flags & Self::MASK {
            0b1000_0000 => CounterResetHeader::CounterReset,
            0b0100_0000 => CounterResetHeader::NotCounterReset,
            0b1100_0000 => CounterResetHeader::Gauge,
            _ => CounterResetHeader::Unknown,
        }
    }
}

/// One decoded sample value of any encoding. Histograms are boxed to keep the
/// float case small.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    Float(f64),
    Histogram(Box<Histogram>),
    FloatHistogram(Box<FloatHistogram>),
}

/// Iterates the samples of a chunk of any encoding (see [`iter_chunk`]).
#[derive(Debug, Clone)]
pub enum ChunkIter<'a> {
    Xor(XorIterator<'a>),
    Histogram(HistogramIterator<'a>),
    FloatHistogram(FloatHistogramIterator<'a>),
}

impl ChunkIter<'_> {
    /// The chunk's encoding.
    pub fn encoding(&self) -> Encoding {
        match self {
            ChunkIter::Xor(_) => Encoding::Xor,
            ChunkIter::Histogram(_) => Encoding::Histogram,
            ChunkIter::FloatHistogram(_) => Encoding::FloatHistogram,
        }
    }

    /// Number of samples the chunk header announces.
    pub fn num_samples(&self) -> usize {
        match self {
            ChunkIter::Xor(it) => it.num_samples(),
            ChunkIter::Histogram(it) => it.num_samples(),
            ChunkIter::FloatHistogram(it) => it.num_samples(),
        }
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<(i64, SampleValue)>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        Some(match self {
            ChunkIter::Xor(it) => it.next()?.map(|(t, v)| (t, SampleValue::Float(v))),
            ChunkIter::Histogram(it) => it
                .next()?
                .map(|(t, h)| (t, SampleValue::Histogram(Box::new(h)))),
            ChunkIter::FloatHistogram(it) => it
                .next()?
                .map(|(t, h)| (t, SampleValue::FloatHistogram(Box::new(h)))),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ChunkIter::Xor(it) => it.size_hint(),
            ChunkIter::Histogram(it) => it.size_hint(),
            ChunkIter::FloatHistogram(it) => it.size_hint(),
        }
    }
}

/// An iterator over chunk `data` with on-disk encoding byte `encoding`. Unknown
/// encodings and Thanos aggregate chunks (0xFF) are [`Error::Unsupported`]; data
/// too short for its header is [`Error::Corrupt`].
pub fn iter_chunk(encoding: u8, data: &[u8]) -> Result<ChunkIter<'_>> {
    Ok(match Encoding::from_u8(encoding)? {
        Encoding::Xor => ChunkIter::Xor(XorIterator::new(data)?),
        Encoding::Histogram => ChunkIter::Histogram(HistogramIterator::new(data)?),
        Encoding::FloatHistogram => ChunkIter::FloatHistogram(FloatHistogramIterator::new(data)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(Encoding::from_u8(1).unwrap(), Encoding::Xor);
        assert_eq!(Encoding::from_u8(3).unwrap() as u8, 3);
        assert!(matches!(
            Encoding::from_u8(ENCODING_AGGR),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            Encoding::from_u8(0),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            iter_chunk(9, &[0, 0]),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(iter_chunk(2, &[0, 0]), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn generic_iterator() {
        let mut c = XorChunk::new();
        c.append(1, 1.5);
        c.append(2, 2.5);
        let got: Vec<_> = iter_chunk(1, c.bytes())
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            got,
            vec![(1, SampleValue::Float(1.5)), (2, SampleValue::Float(2.5))]
        );
        let mut h = HistogramChunk::new();
        h.append(
            7,
            &Histogram {
                count: 1,
                sum: 1.0,
                ..Default::default()
            },
        )
        .unwrap();
        let mut it = iter_chunk(2, h.bytes()).unwrap();
        assert_eq!(it.encoding(), Encoding::Histogram);
        assert_eq!(it.num_samples(), 1);
        let (t, v) = it.next().unwrap().unwrap();
        assert_eq!(t, 7);
        assert!(matches!(v, SampleValue::Histogram(h) if h.count == 1));
        assert!(it.next().is_none());
        assert_eq!(
            CounterResetHeader::from_flags(0xff),
            CounterResetHeader::Gauge
        );
    }

    #[test]
    fn value_is_small() {
        assert!(std::mem::size_of::<SampleValue>() <= 16);
    }
}
