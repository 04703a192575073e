//! A small zlib/DEFLATE decoder (RFC 1950, RFC 1951) for SPDY header blocks.
//!
//! SPDY/3 compresses every header block of a connection as one zlib stream
//! primed with a preset dictionary, each block ending on a `Z_SYNC_FLUSH`
//! boundary. The peer here is the kubelet's streaming server (Go's
//! `compress/zlib` at best compression), whose blocks refer back into the
//! dictionary, so a real inflater is needed. Header blocks are a few hundred
//! bytes, so this decoder favours size over speed: canonical Huffman codes
//! decoded bit by bit, no lookup tables, no unsafe, no dependency.
//!
//! [`Inflater::inflate_flushed`] takes one flushed chunk (the compressed
//! bytes of one frame) and returns what it decodes to; the window (the
//! dictionary, then everything decoded so far, last 32 KiB) carries over to
//! the next chunk.

/// Why a compressed header block could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InflateError {
    #[error("zlib header is invalid ({0:#06x})")]
    BadZlibHeader(u16),
    #[error("zlib stream names dictionary {got:#010x}, expected {want:#010x}")]
    WrongDictionary { got: u32, want: u32 },
    #[error("compressed data ends inside a deflate block (not flushed)")]
    Truncated,
    #[error("invalid deflate data: {0}")]
    Invalid(&'static str),
    #[error("data after the end of the zlib stream")]
    AfterEnd,
    #[error("zlib checksum mismatch")]
    Checksum,
    #[error("decoded block is larger than {0} bytes")]
    TooLarge(usize),
}

type Result<T> = std::result::Result<T, InflateError>;

/// DEFLATE's window: how far back a match may reach.
const WINDOW: usize = 32 * 1024;

/// Adler-32 (RFC 1950 section 8.2).
pub(crate) fn adler32(data: &[u8]) -> u32 {
    Adler32::default().update(data).value()
}

#[derive(Clone, Copy)]
struct Adler32 {
    a: u32,
    b: u32,
}

impl Default for Adler32 {
    fn default() -> Self {
        Adler32 { a: 1, b: 0 }
    }
}

impl Adler32 {
    const MOD: u32 = 65_521;

    fn update(mut self, data: &[u8]) -> Self {
        // 5552 bytes is the most that cannot overflow u32 before the modulo.
        for chunk in data.chunks(5552) {
            for &byte in chunk {
                self.a += u32::from(byte);
                self.b += self.a;
            }
            self.a %= Self::MOD;
            self.b %= Self::MOD;
        }
        self
    }

    fn value(self) -> u32 {
        (self.b << 16) | self.a
    }
}

/// A zlib stream decoded one flushed chunk at a time.
pub struct Inflater {
    dictionary: &'static [u8],
    /// The last `WINDOW` bytes of output (initially the dictionary).
    window: Vec<u8>,
    header_seen: bool,
    finished: bool,
    checksum: Adler32,
    max_output: usize,
}

impl Inflater {
    /// A decoder for a stream primed with `dictionary`; each chunk may decode
    /// to at most `max_output` bytes.
    pub fn with_dictionary(dictionary: &'static [u8], max_output: usize) -> Self {
        let start = dictionary.len().saturating_sub(WINDOW);
        Inflater {
            dictionary,
            window: dictionary[start..].to_vec(),
            header_seen: false,
            finished: false,
            checksum: Adler32::default(),
            max_output,
        }
    }

    /// Decode one chunk that ends on a flush boundary.
    pub fn inflate_flushed(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let mut bits = BitReader::new(input);
        if !self.header_seen {
            self.read_zlib_header(&mut bits)?;
            self.header_seen = true;
        }
        let start = self.window.len();
        while !bits.at_end() {
            if self.finished {
                return Err(InflateError::AfterEnd);
            }
            let last = bits.bits(1)? == 1;
            match bits.bits(2)? {
                0 => self.stored(&mut bits, start)?,
                1 => self.compressed(
                    &mut bits,
                    &Huffman::fixed_lit()?,
                    &Huffman::fixed_dist()?,
                    start,
                )?,
                2 => {
                    let (lit, dist) = Huffman::dynamic(&mut bits)?;
                    self.compressed(&mut bits, &lit, &dist, start)?;
                }
                _ => return Err(InflateError::Invalid("reserved block type")),
            }
            if last {
                self.finished = true;
                bits.align();
                let mut want = 0;
                for _ in 0..4 {
                    want = want << 8 | bits.bits(8)?;
                }
                self.checksum = self.checksum.update(&self.window[start..]);
                if want != self.checksum.value() {
                    return Err(InflateError::Checksum);
                }
            }
        }
        let output = self.window.split_off(start);
        if !self.finished {
            self.checksum = self.checksum.update(&output);
        }
        self.window.extend_from_slice(&output);
        let excess = self.window.len().saturating_sub(WINDOW);
        self.window.drain(..excess);
        Ok(output)
    }

    fn read_zlib_header(&mut self, bits: &mut BitReader<'_>) -> Result<()> {
        let cmf = bits.bits(8)?;
        let flg = bits.bits(8)?;
        let word = ((cmf << 8) | flg) as u16;
        if cmf & 0x0f != 8 || cmf >> 4 > 7 || !word.is_multiple_of(31) {
            return Err(InflateError::BadZlibHeader(word));
        }
        if flg & 0x20 != 0 {
            let mut got = 0;
            for _ in 0..4 {
                got = got << 8 | bits.bits(8)?;
            }
            let want = adler32(self.dictionary);
            if got != want {
                return Err(InflateError::WrongDictionary { got, want });
            }
        } else {
            // No preset dictionary: the window starts empty.
            self.window.clear();
        }
        Ok(())
    }

    fn push(&mut self, byte: u8, start: usize) -> Result<()> {
        if self.window.len() - start >= self.max_output {
            return Err(InflateError::TooLarge(self.max_output));
        }
        self.window.push(byte);
        Ok(())
    }

    fn stored(&mut self, bits: &mut BitReader<'_>, start: usize) -> Result<()> {
        bits.align();
        let len = bits.bits(16)?;
        let nlen = bits.bits(16)?;
        if len != !nlen & 0xffff {
            return Err(InflateError::Invalid("stored block length check"));
        }
        for _ in 0..len {
            let byte = bits.bits(8)? as u8;
            self.push(byte, start)?;
        }
        Ok(())
    }

    fn compressed(
        &mut self,
        bits: &mut BitReader<'_>,
        lit: &Huffman,
        dist: &Huffman,
        start: usize,
    ) -> Result<()> {
        const LEN_BASE: [u16; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEN_EXTRA: [u8; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DIST_BASE: [u16; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        const DIST_EXTRA: [u8; 30] = [
            0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12,
            12, 13, 13,
        ];
        loop {
            let symbol = usize::from(lit.decode(bits)?);
            match symbol {
                0..=255 => self.push(symbol as u8, start)?,
                256 => return Ok(()),
                _ => {
                    let index = symbol - 257;
                    let (Some(base), Some(extra)) = (LEN_BASE.get(index), LEN_EXTRA.get(index))
                    else {
                        return Err(InflateError::Invalid("length symbol"));
                    };
                    let len = usize::from(*base) + bits.bits(u32::from(*extra))? as usize;
                    let index = usize::from(dist.decode(bits)?);
                    let (Some(base), Some(extra)) = (DIST_BASE.get(index), DIST_EXTRA.get(index))
                    else {
                        return Err(InflateError::Invalid("distance symbol"));
                    };
                    let distance = usize::from(*base) + bits.bits(u32::from(*extra))? as usize;
                    if distance > self.window.len() {
                        return Err(InflateError::Invalid("distance too far back"));
                    }
                    for _ in 0..len {
                        let byte = self.window[self.window.len() - distance];
                        self.push(byte, start)?;
                    }
                }
            }
        }
    }
}

/// Bits of a byte slice, least significant bit first (RFC 1951 3.1.1).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    bit: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            bit: 0,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// `n` (at most 16) bits as an integer, first bit lowest.
    fn bits(&mut self, n: u32) -> Result<u32> {
        let mut value = 0;
        for i in 0..n {
            let byte = *self.data.get(self.pos).ok_or(InflateError::Truncated)?;
            value |= u32::from((byte >> self.bit) & 1) << i;
            self.bit += 1;
            if self.bit == 8 {
                self.bit = 0;
                self.pos += 1;
            }
        }
        Ok(value)
    }

    fn align(&mut self) {
        if self.bit != 0 {
            self.bit = 0;
            self.pos += 1;
        }
    }
}

/// A canonical Huffman code: how many codes of each length, and the symbols
/// in code order.
struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman> {
        let mut counts = [0u16; 16];
        for &len in lengths {
            counts[usize::from(len)] += 1;
        }
        let mut left: i32 = 1;
        for &count in &counts[1..] {
            left = (left << 1) - i32::from(count);
            if left < 0 {
                return Err(InflateError::Invalid("over-subscribed code"));
            }
        }
        let mut offsets = [0u16; 16];
        for len in 1..15 {
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                let slot = &mut offsets[usize::from(len)];
                symbols[usize::from(*slot)] = symbol as u16;
                *slot += 1;
            }
        }
        Ok(Huffman { counts, symbols })
    }

    fn decode(&self, bits: &mut BitReader<'_>) -> Result<u16> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.bits(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - first < count {
                let at = usize::try_from(index + code - first)
                    .map_err(|_| InflateError::Invalid("code"))?;
                return self
                    .symbols
                    .get(at)
                    .copied()
                    .ok_or(InflateError::Invalid("code"));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(InflateError::Invalid("incomplete code used"))
    }

    fn fixed_lit() -> Result<Huffman> {
        let mut lengths = [0u8; 288];
        for (symbol, len) in lengths.iter_mut().enumerate() {
            *len = match symbol {
                0..=143 => 8,
                144..=255 => 9,
                256..=279 => 7,
                _ => 8,
            };
        }
        Huffman::new(&lengths)
    }

    fn fixed_dist() -> Result<Huffman> {
        Huffman::new(&[5u8; 30])
    }

    fn dynamic(bits: &mut BitReader<'_>) -> Result<(Huffman, Huffman)> {
        const ORDER: [usize; 19] = [
            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
        ];
        let nlen = bits.bits(5)? as usize + 257;
        let ndist = bits.bits(5)? as usize + 1;
        let ncode = bits.bits(4)? as usize + 4;
        if nlen > 286 || ndist > 30 {
            return Err(InflateError::Invalid("too many length or distance codes"));
        }
        let mut code_lengths = [0u8; 19];
        for &slot in &ORDER[..ncode] {
            code_lengths[slot] = bits.bits(3)? as u8;
        }
        let code = Huffman::new(&code_lengths)?;
        let mut lengths = vec![0u8; nlen + ndist];
        let mut i = 0;
        while i < lengths.len() {
            let symbol = code.decode(bits)?;
            let (value, repeat) = match symbol {
                0..=15 => (symbol as u8, 1),
                16 => {
                    let previous = *i
                        .checked_sub(1)
                        .and_then(|p| lengths.get(p))
                        .ok_or(InflateError::Invalid("repeat with no previous length"))?;
                    (previous, 3 + bits.bits(2)? as usize)
                }
                17 => (0, 3 + bits.bits(3)? as usize),
                _ => (0, 11 + bits.bits(7)? as usize),
            };
            if i + repeat > lengths.len() {
                return Err(InflateError::Invalid("too many lengths"));
            }
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        if lengths[256] == 0 {
            return Err(InflateError::Invalid("no end-of-block code"));
        }
        Ok((
            Huffman::new(&lengths[..nlen])?,
            Huffman::new(&lengths[nlen..])?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_known_values() {
        // RFC 1950's definition; "Wikipedia" is the classic worked example.
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        assert_eq!(adler32(b""), 1);
    }

    #[test]
    fn stored_fixed_and_dynamic_blocks_from_real_zlib() {
        static NO_DICT: &[u8] = b"";
        // `zlib.compress(b"hello hello hello hello", 9)` (CPython, real zlib):
        // one fixed-Huffman final block with back-references, then Adler-32.
        let fixed = [
            0x78, 0xda, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x27, 0x01, 0x68, 0x03,
            0x08, 0xb1,
        ];
        let mut inflater = Inflater::with_dictionary(NO_DICT, 1 << 20);
        assert_eq!(
            inflater.inflate_flushed(&fixed).unwrap(),
            b"hello hello hello hello"
        );
        // Nothing may follow the final block.
        assert_eq!(inflater.inflate_flushed(&[0]), Err(InflateError::AfterEnd));
    }

    #[test]
    fn rejects_bad_input() {
        static NO_DICT: &[u8] = b"";
        let mut inflater = Inflater::with_dictionary(NO_DICT, 1 << 20);
        assert!(matches!(
            inflater.inflate_flushed(&[0x78, 0x9d]),
            Err(InflateError::BadZlibHeader(_))
        ));
        // A stored block whose NLEN is not the complement of LEN.
        let mut inflater = Inflater::with_dictionary(NO_DICT, 1 << 20);
        assert_eq!(
            inflater.inflate_flushed(&[0x78, 0x9c, 0x00, 0x01, 0x00, 0x00, 0x00]),
            Err(InflateError::Invalid("stored block length check"))
        );
        // Cut in the middle of a stored block.
        let mut inflater = Inflater::with_dictionary(NO_DICT, 1 << 20);
        assert_eq!(
            inflater.inflate_flushed(&[0x78, 0x9c, 0x00, 0x05, 0x00, 0xfa, 0xff, b'a']),
            Err(InflateError::Truncated)
        );
        // The output limit holds.
        let mut inflater = Inflater::with_dictionary(NO_DICT, 2);
        assert_eq!(
            inflater.inflate_flushed(&[0x78, 0x9c, 0x00, 0x03, 0x00, 0xfc, 0xff, b'a', b'b', b'c']),
            Err(InflateError::TooLarge(2))
        );
    }
}
