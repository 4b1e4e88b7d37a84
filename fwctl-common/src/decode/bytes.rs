//! Bounds-checked little/big-endian reads from fixed arrays that can never panic
//! (an out-of-range read yields 0), so the eBPF build has no panic path to reject.

#[inline(always)]
pub fn u8_at<const N: usize>(buf: &[u8; N], at: usize) -> u8 {
    match buf.get(at) {
        Some(b) => *b,
        None => 0,
    }
}

#[inline(always)]
pub fn le16<const N: usize>(buf: &[u8; N], at: usize) -> u16 {
    u16::from_le_bytes([u8_at(buf, at), u8_at(buf, at.saturating_add(1))])
}

#[cfg(test)]
pub fn be16<const N: usize>(buf: &[u8; N], at: usize) -> u16 {
    u16::from_be_bytes([u8_at(buf, at), u8_at(buf, at.saturating_add(1))])
}

#[inline(always)]
pub fn le32<const N: usize>(buf: &[u8; N], at: usize) -> u32 {
    u32::from_le_bytes([
        u8_at(buf, at),
        u8_at(buf, at.saturating_add(1)),
        u8_at(buf, at.saturating_add(2)),
        u8_at(buf, at.saturating_add(3)),
    ])
}

#[cfg(test)]
pub fn be32<const N: usize>(buf: &[u8; N], at: usize) -> u32 {
    u32::from_be_bytes([
        u8_at(buf, at),
        u8_at(buf, at.saturating_add(1)),
        u8_at(buf, at.saturating_add(2)),
        u8_at(buf, at.saturating_add(3)),
    ])
}

#[inline(always)]
pub fn le64<const N: usize>(buf: &[u8; N], at: usize) -> u64 {
    (le32(buf, at) as u64) | ((le32(buf, at.saturating_add(4)) as u64) << 32)
}

/// A fixed-position integer field inside a payload.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub offset: u8,
    /// 1, 2 or 4 bytes.
    pub width: u8,
    pub big_endian: bool,
}

impl Field {
    pub const fn le(offset: u8, width: u8) -> Self {
        Self { offset, width, big_endian: false }
    }
    pub const fn be(offset: u8, width: u8) -> Self {
        Self { offset, width, big_endian: true }
    }

    #[inline(always)]
    pub fn read<const N: usize>(&self, buf: &[u8; N]) -> u32 {
        self.read_window(le64(buf, 0))
    }

    /// Read the field from the first 8 bytes of a payload, given as one little-endian
    /// word. Table offsets are data, so indexing the buffer with them would be a
    /// variable-offset stack access, which older verifiers (6.1) refuse; shifting a
    /// register by a variable amount is fine. Fields must lie within bytes 0..8
    /// ([`Field::fits_window`]).
    #[inline(always)]
    pub fn read_window(&self, word: u64) -> u32 {
        let byte = |i: u8| ((word >> ((i as u64 & 7) * 8)) & 0xff) as u32;
        let at = self.offset;
        let width = if self.width > 4 { 4 } else { self.width };
        let mut value = 0u32;
        let mut i = 0u8;
        while i < 4 {
            if i < width {
                value = if self.big_endian {
                    (value << 8) | byte(at.saturating_add(i))
                } else {
                    value | (byte(at.saturating_add(i)) << (8 * i as u32))
                };
            }
            i += 1;
        }
        value
    }

    /// Whether the field lies within the 8-byte window `read_window` sees.
    pub const fn fits_window(&self) -> bool {
        self.offset as u32 + self.width as u32 <= 8 && self.width >= 1 && self.width <= 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_zero_not_panics() {
        let buf = [0xffu8; 4];
        assert_eq!(le32(&buf, 0), u32::MAX);
        assert_eq!(le32(&buf, 2), 0xffff);
        assert_eq!(le64(&buf, 100), 0);
        assert_eq!(be16(&buf, usize::MAX), 0);
    }

    #[test]
    fn window_reads_agree_with_buffer_reads() {
        let buf = [0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
        for offset in 0..8u8 {
            for width in [1u8, 2, 4] {
                for f in [Field::le(offset, width), Field::be(offset, width)] {
                    if !f.fits_window() {
                        continue;
                    }
                    let at = offset as usize;
                    let expected = match (width, f.big_endian) {
                        (1, _) => buf[at] as u32,
                        (2, false) => le16(&buf, at) as u32,
                        (2, true) => be16(&buf, at) as u32,
                        (_, false) => le32(&buf, at),
                        (_, true) => be32(&buf, at),
                    };
                    assert_eq!(f.read(&buf), expected, "{f:?}");
                }
            }
        }
    }

    #[test]
    fn fields_respect_endianness() {
        let buf = [0x01, 0x02, 0x03, 0x04];
        assert_eq!(Field::be(0, 2).read(&buf), 0x0102);
        assert_eq!(Field::le(0, 2).read(&buf), 0x0201);
        assert_eq!(Field::le(0, 4).read(&buf), 0x0403_0201);
        assert_eq!(Field::be(0, 4).read(&buf), 0x0102_0304);
        assert_eq!(Field::le(3, 1).read(&buf), 0x04);
    }
}
