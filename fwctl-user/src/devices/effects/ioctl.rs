//! Opening a device node and issuing one ioctl on it: the only unsafe code of the effects
//! readers.

use std::{fs::File, io, os::fd::AsRawFd, path::Path};

use super::failure::ReadError;

/// Open `node` read-only: every command the readers send only reads from the device.
pub fn open(node: &Path) -> Result<File, ReadError> {
    File::open(node).map_err(|e| ReadError::os(e, format!("{}: open", node.display())))
}

/// `ioctl(file, cmd, arg)`: the driver's non-negative return value, or the errno.
///
/// # Safety
/// `arg` must be the argument struct `cmd` expects, and every user pointer inside it
/// must point at a live buffer of the length the struct declares.
pub unsafe fn ioctl<T>(file: &File, cmd: u32, arg: &mut T) -> io::Result<i32> {
    // SAFETY: per this function's contract.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), cmd as _, arg as *mut T) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
