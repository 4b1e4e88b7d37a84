//! Device numbers, the one definition for the kernel and the agent: the kernel's internal
//! `dev_t` layout (what `inode->i_rdev` holds), the key of the watched-device map, the
//! file-type bits of `i_mode` that say whether an inode is a device node, and the
//! `MAJOR:MINOR` text of `/proc/devices`, sysfs and configuration files.
//!
//! Not for: deciding which devices are watched (the agent's inventory) or reading inodes
//! (the eBPF `device` module); this is arithmetic and parsing only.

/// Bits of the minor number in the kernel's internal `dev_t` (include/linux/kdev_t.h:
/// MINORBITS). Not the userspace `dev_t` layout of `stat(2)`.
const MINOR_BITS: u32 = 20;

/// Largest major and minor a `dev_t` holds (12 and 20 bits).
pub const MAJOR_MAX: u32 = 0xfff;
pub const MINOR_MAX: u32 = (1 << MINOR_BITS) - 1;

/// Minor value meaning "every minor of this major" in [`device_key`].
pub const ANY_MINOR: u32 = MINOR_MAX;

/// The major of a kernel-internal dev_t (`MAJOR()`).
pub const fn rdev_major(rdev: u32) -> u32 {
    rdev >> MINOR_BITS
}

/// The minor of a kernel-internal dev_t (`MINOR()`).
pub const fn rdev_minor(rdev: u32) -> u32 {
    rdev & MINOR_MAX
}

/// Key of the device map: a whole major (`minor` = [`ANY_MINOR`]) or one node.
/// Character and block device numbers are separate namespaces, hence `block`.
pub const fn device_key(block: bool, major: u32, minor: u32) -> u64 {
    ((block as u64) << 40)
        | ((major as u64 & MAJOR_MAX as u64) << MINOR_BITS)
        | (minor as u64 & MINOR_MAX as u64)
}

/// [`device_key`] of the node with kernel dev_t `rdev`.
pub const fn node_key(block: bool, rdev: u32) -> u64 {
    device_key(block, rdev_major(rdev), rdev_minor(rdev))
}

/// [`device_key`] of the whole major of kernel dev_t `rdev` (the entry that covers every
/// minor of a driver, including nodes that appear later).
pub const fn major_key(block: bool, rdev: u32) -> u64 {
    device_key(block, rdev_major(rdev), ANY_MINOR)
}

/// `S_IFMT` / `S_IFBLK` / `S_IFCHR` from include/uapi/linux/stat.h.
pub const S_IFMT: u16 = 0o170000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFCHR: u16 = 0o020000;

/// Whether an inode with `mode` is a block device node (`Some(true)`), a character
/// device node (`Some(false)`) or no device node at all (`None`: regular files, sockets...).
#[inline(always)]
pub const fn block_device(mode: u16) -> Option<bool> {
    match mode & S_IFMT {
        S_IFBLK => Some(true),
        S_IFCHR => Some(false),
        _ => None,
    }
}

/// Why a `MAJOR:MINOR` text is not a device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MajorMinorError {
    NoColon,
    BadMajor,
    BadMinor,
    OutOfRange,
}

impl core::fmt::Display for MajorMinorError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MajorMinorError::NoColon => "not MAJOR:MINOR",
            MajorMinorError::BadMajor => "bad major",
            MajorMinorError::BadMinor => "bad minor",
            MajorMinorError::OutOfRange => "out of range (major < 4096, minor < 1048576)",
        })
    }
}

/// `MAJOR:MINOR` (decimal, as `/proc/devices`, sysfs `dev` files and `ls -l` print them).
pub fn parse_major_minor(text: &str) -> Result<(u32, u32), MajorMinorError> {
    let (major, minor) = text.split_once(':').ok_or(MajorMinorError::NoColon)?;
    let major: u32 = major.trim().parse().map_err(|_| MajorMinorError::BadMajor)?;
    let minor: u32 = minor.trim().parse().map_err(|_| MajorMinorError::BadMinor)?;
    if major > MAJOR_MAX || minor > MINOR_MAX {
        return Err(MajorMinorError::OutOfRange);
    }
    Ok((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_keys_separate_char_block_and_wildcards() {
        assert_ne!(device_key(false, 8, 0), device_key(true, 8, 0));
        assert_ne!(device_key(false, 8, 0), device_key(false, 8, ANY_MINOR));
        assert_eq!(rdev_major((259 << 20) | 7), 259);
        assert_eq!(rdev_minor((259 << 20) | 7), 7);
    }

    #[test]
    fn keys_of_a_dev_t_equal_the_keys_of_its_major_and_minor() {
        // What the kernel sees (i_rdev) must find what the agent wrote (major:minor text).
        let (major, minor) = parse_major_minor("259:7").unwrap();
        let rdev = (259 << 20) | 7;
        for block in [false, true] {
            assert_eq!(node_key(block, rdev), device_key(block, major, minor));
            assert_eq!(major_key(block, rdev), device_key(block, major, ANY_MINOR));
        }
        assert_ne!(node_key(false, rdev), node_key(false, rdev + 1));
        // The largest numbers do not spill into the neighbouring field or the block bit.
        let top = (MAJOR_MAX << 20) | (MINOR_MAX - 1);
        assert_eq!(node_key(false, top), ((MAJOR_MAX as u64) << 20) | (MINOR_MAX as u64 - 1));
        assert_eq!(node_key(true, 0), 1 << 40);
    }

    #[test]
    fn only_block_and_character_nodes_are_device_nodes() {
        assert_eq!(block_device(0o060660), Some(true), "brw-rw----");
        assert_eq!(block_device(0o020600), Some(false), "crw-------");
        assert_eq!(block_device(0o100644), None, "regular file");
        assert_eq!(block_device(0o140777), None, "socket (S_IFSOCK shares bits with S_IFBLK)");
        assert_eq!(block_device(0o010644), None, "fifo");
        assert_eq!(block_device(0o040755), None, "directory (shares a bit with S_IFCHR)");
    }

    #[test]
    fn major_minor_text() {
        assert_eq!(parse_major_minor("259:1"), Ok((259, 1)));
        assert_eq!(parse_major_minor(" 8 : 0 "), Ok((8, 0)));
        assert_eq!(parse_major_minor("259"), Err(MajorMinorError::NoColon));
        assert_eq!(parse_major_minor("x:1"), Err(MajorMinorError::BadMajor));
        assert_eq!(parse_major_minor("1:-1"), Err(MajorMinorError::BadMinor));
        assert_eq!(parse_major_minor("4096:0"), Err(MajorMinorError::OutOfRange));
        assert_eq!(parse_major_minor("1:1048576"), Err(MajorMinorError::OutOfRange));
    }
}
