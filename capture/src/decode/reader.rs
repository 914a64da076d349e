//! A bounds-checked little cursor over a byte slice.
//!
//! Every read returns `None` when the input is too short instead of panicking; callers turn that into a
//! [`DecodeError`](super::DecodeError) carrying the table and column they were decoding.

/// Reads fixed-size integers and slices from a borrowed buffer.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Offset of the next byte from the start of the buffer.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    /// The next `N` bytes as an array.
    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Some(out)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let slice = &self.buf[self.pos..];
        self.pos = self.buf.len();
        slice
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    pub(crate) fn u32_le(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    #[inline]
    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// An unsigned little-endian integer of `n` bytes (0 to 8).
    #[inline]
    pub(crate) fn uint_le(&mut self, n: usize) -> Option<u64> {
        if n > 8 {
            return None;
        }
        let bytes = self.take(n)?;
        Some(bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A length-encoded integer of the client/server protocol (`0xfc` + 2 bytes, `0xfd` + 3, `0xfe` + 8).
    pub(crate) fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            b @ 0..=0xfa => Some(u64::from(b)),
            0xfc => self.uint_le(2),
            0xfd => self.uint_le(3),
            0xfe => self.u64_le(),
            // 0xfb is NULL and 0xff an error marker: neither is a valid length here.
            _ => None,
        }
    }

    /// A length-encoded integer that must fit a `usize` and not exceed what is left in the buffer.
    pub(crate) fn lenenc_len(&mut self) -> Option<usize> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        (n <= self.remaining()).then_some(n)
    }

    /// A string prefixed by its length-encoded length.
    pub(crate) fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc_len()?;
        self.take(n)
    }
}

/// A big-endian unsigned integer of up to 8 bytes.
#[inline]
pub(crate) fn be_uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.uint_le(2), Some(0x0201));
        assert_eq!(r.uint_le(2), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert!(r.is_empty());
        assert_eq!(Reader::new(&[]).take(usize::MAX), None);
    }

    #[test]
    fn lenenc_forms() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (&[0x05], Some(5)),
            (&[0xfa], Some(250)),
            (&[0xfc, 0x34, 0x12], Some(0x1234)),
            (&[0xfd, 0x56, 0x34, 0x12], Some(0x12_3456)),
            (&[0xfe, 1, 0, 0, 0, 0, 0, 0, 0x80], Some(0x8000_0000_0000_0001)),
            (&[0xfb], None),
            (&[0xff], None),
            (&[0xfc, 0x34], None),
        ];
        for (input, expected) in cases {
            assert_eq!(Reader::new(input).lenenc(), *expected, "{input:?}");
        }
        assert_eq!(Reader::new(&[0x03, b'a', b'b']).lenenc_bytes(), None);
        assert_eq!(Reader::new(&[0x02, b'a', b'b']).lenenc_bytes(), Some(&b"ab"[..]));
    }

    #[test]
    fn integers() {
        assert_eq!(Reader::new(&[0x01, 0x02, 0x03]).uint_le(3), Some(0x030201));
        assert_eq!(be_uint(&[0x01, 0x02, 0x03]), 0x010203);
        assert_eq!(Reader::new(&[0; 9]).uint_le(9), None);
    }
}
