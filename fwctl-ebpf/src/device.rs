//! Which device a file descriptor or file refers to, and whether the agent watches it.
//! The kernel reads only: the dev_t layout, map keys and file-type bits are
//! `fwctl_common::device_number`'s; what is watched is the agent's `DEVICES` map.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use fwctl_common::{
    device_number::{block_device, major_key, node_key},
    model::{DeviceInfo, KernelOffsets},
};

use crate::maps::DEVICES;

/// A device node: its kernel dev_t and whether it is a block device.
#[derive(Clone, Copy)]
pub struct Node {
    pub rdev: u32,
    pub block: bool,
}

/// Walk current->files->fdt->fd[fd]->f_inode (offsets from the kernel's BTF).
#[inline(always)]
pub fn node_of_fd(fd: u64, off: &KernelOffsets) -> Result<Option<Node>, i64> {
    // SAFETY: every dereference goes through bpf_probe_read_kernel, which fails cleanly.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let files: *const u8 = bpf_probe_read_kernel(task.add(off.task_files as usize) as *const _)?;
        let fdt: *const u8 = bpf_probe_read_kernel(files.add(off.files_fdt as usize) as *const _)?;
        let max_fds: u32 = bpf_probe_read_kernel(fdt.add(off.fdt_max_fds as usize) as *const _)?;
        if fd >= max_fds as u64 {
            return Err(-9); // EBADF: the kernel will refuse the ioctl too
        }
        let fd_array: *const *const u8 = bpf_probe_read_kernel(fdt.add(off.fdt_fd as usize) as *const _)?;
        let file: *const u8 = bpf_probe_read_kernel(fd_array.add(fd as usize))?;
        if file.is_null() {
            return Err(-9);
        }
        node_of_file(file, off)
    }
}

/// The node behind a `struct file *`, or None when it is not a device node.
#[inline(always)]
pub fn node_of_file(file: *const u8, off: &KernelOffsets) -> Result<Option<Node>, i64> {
    // SAFETY: as above.
    unsafe {
        let inode: *const u8 = bpf_probe_read_kernel(file.add(off.file_inode as usize) as *const _)?;
        let mode: u16 = bpf_probe_read_kernel(inode.add(off.inode_mode as usize) as *const _)?;
        let Some(block) = block_device(mode) else {
            return Ok(None);
        };
        let rdev: u32 = bpf_probe_read_kernel(inode.add(off.inode_rdev as usize) as *const _)?;
        Ok(Some(Node { rdev, block }))
    }
}

/// The watched-device entry for a node: an exact major:minor entry wins over a major-wide one.
#[inline(always)]
pub fn watched(node: Node) -> Option<DeviceInfo> {
    // SAFETY: values are plain data copied out immediately.
    unsafe {
        if let Some(info) = DEVICES.get(node_key(node.block, node.rdev)) {
            return Some(*info);
        }
        DEVICES.get(major_key(node.block, node.rdev)).copied()
    }
}
