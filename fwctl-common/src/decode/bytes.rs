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

#[inline(always)]
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

#[inline(always)]
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
        let at = self.offset as usize;
        match (self.width, self.big_endian) {
            (1, _) => u8_at(buf, at) as u32,
            (2, false) => le16(buf, at) as u32,
            (2, true) => be16(buf, at) as u32,
            (_, false) => le32(buf, at),
            (_, true) => be32(buf, at),
        }
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
    fn fields_respect_endianness() {
        let buf = [0x01, 0x02, 0x03, 0x04];
        assert_eq!(Field::be(0, 2).read(&buf), 0x0102);
        assert_eq!(Field::le(0, 2).read(&buf), 0x0201);
        assert_eq!(Field::le(0, 4).read(&buf), 0x0403_0201);
        assert_eq!(Field::be(0, 4).read(&buf), 0x0102_0304);
        assert_eq!(Field::le(3, 1).read(&buf), 0x04);
    }
}
