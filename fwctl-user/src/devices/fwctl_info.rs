//! FWCTL_INFO on a fwctl node: which driver family (device type) serves it.

use std::{fs::File, os::fd::AsRawFd, path::Path};

use fwctl_common::abi::FWCTL_INFO;

/// `struct fwctl_info` (include/uapi/fwctl/fwctl.h).
#[repr(C)]
#[derive(Default)]
struct FwctlInfo {
    size: u32,
    flags: u32,
    out_device_type: u32,
    device_data_len: u32,
    out_device_data: u64,
}

/// The node's `enum fwctl_device_type`, or None if it cannot be asked.
pub fn device_type(node: &Path) -> Option<u32> {
    let file = File::open(node).ok()?;
    let mut info = FwctlInfo { size: std::mem::size_of::<FwctlInfo>() as u32, ..Default::default() };
    // SAFETY: FWCTL_INFO reads `size` bytes of `info` and writes out_device_type; we pass
    // no device-data buffer (device_data_len 0).
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FWCTL_INFO as _, &mut info as *mut FwctlInfo) };
    (rc == 0).then_some(info.out_device_type)
}
