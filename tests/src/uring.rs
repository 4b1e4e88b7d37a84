//! NVMe passthrough over io_uring (`IORING_OP_URING_CMD` with a 128-byte SQE and 32-byte
//! CQE, as the nvme driver requires), for the attack tests: a command that makes no ioctl
//! syscall at all.

use std::os::fd::RawFd;

use io_uring::{cqueue, opcode, squeue, IoUring};

/// `struct nvme_uring_cmd` (72 bytes, include/uapi/linux/nvme_ioctl.h) in the 80-byte
/// command area: opcode, nsid, data buffer and length, cdw10.
pub fn nvme_uring_cmd(opcode: u8, nsid: u32, cdw10: u32, data: Option<&mut [u8]>) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    cmd[0] = opcode;
    cmd[4..8].copy_from_slice(&nsid.to_le_bytes());
    if let Some(buf) = data {
        cmd[24..32].copy_from_slice(&(buf.as_mut_ptr() as u64).to_le_bytes());
        cmd[36..40].copy_from_slice(&(buf.len() as u32).to_le_bytes());
    }
    cmd[40..44].copy_from_slice(&cdw10.to_le_bytes());
    cmd
}

/// Submit one uring command on `fd` and wait for it: the CQE's result (0 or -errno).
pub fn submit(fd: RawFd, cmd_op: u32, cmd: [u8; 80]) -> std::io::Result<i32> {
    let mut ring: IoUring<squeue::Entry128, cqueue::Entry32> = IoUring::builder().build(4)?;
    let entry = opcode::UringCmd80::new(io_uring::types::Fd(fd), cmd_op).cmd(cmd).build().user_data(0x66);
    // SAFETY: the command's buffers outlive the wait below.
    unsafe { ring.submission().push(&entry) }.map_err(|_| std::io::Error::other("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring.completion().next().ok_or_else(|| std::io::Error::other("no completion"))?;
    Ok(cqe.result())
}
