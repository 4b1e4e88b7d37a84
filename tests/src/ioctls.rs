//! Real passthrough ioctls with payloads laid out like the uAPI structs.

use std::os::fd::RawFd;

use fwctl_common::abi;

/// Issue `ioctl(fd, cmd, arg)`; returns the raw result (-1 and errno on failure).
pub fn ioctl(fd: RawFd, cmd: u32, arg: u64) -> i64 {
    // SAFETY: the kernel validates `arg`; tests pass pointers to live buffers or
    // deliberately bad addresses (which the kernel rejects with EFAULT).
    unsafe { libc::ioctl(fd, cmd as _, arg as usize) as i64 }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A `struct fwctl_rpc` pointing at `payload` (kept alive by the caller).
pub fn fwctl_rpc(scope: u32, payload: &[u8], out: &mut [u8]) -> [u8; 32] {
    let mut rpc = [0u8; 32];
    put_u32(&mut rpc, 0, 32);
    put_u32(&mut rpc, 4, scope);
    put_u32(&mut rpc, 8, payload.len() as u32);
    put_u32(&mut rpc, 12, out.len() as u32);
    put_u64(&mut rpc, 16, payload.as_ptr() as u64);
    put_u64(&mut rpc, 24, out.as_mut_ptr() as u64);
    rpc
}

/// mlx5 mailbox: BE16 opcode @0, BE16 op_mod @6, 16 bytes minimum.
pub fn mlx5_payload(opcode: u16, op_mod: u16) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    p[0..2].copy_from_slice(&opcode.to_be_bytes());
    p[6..8].copy_from_slice(&op_mod.to_be_bytes());
    p
}

/// `struct fwctl_rpc_cxl`: LE32 opcode @0, then a Set/Get Feature header.
pub fn cxl_fwctl_payload(opcode: u16) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    put_u32(&mut p, 0, opcode as u32);
    p
}

/// `struct fwctl_rpc_pds` in: op @0 (cmd bits 15:0), ep @4.
pub fn pds_payload(op: u32, ep: u32) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    put_u32(&mut p, 0, op);
    put_u32(&mut p, 4, ep);
    p
}

/// bnxt HWRM `struct input`: req_type LE16 @0.
pub fn bnxt_payload(req_type: u16) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..2].copy_from_slice(&req_type.to_le_bytes());
    p
}

/// `struct nvme_passthru_cmd` (72 B) or `_cmd64` (80 B).
pub fn nvme_passthru(opcode: u8, nsid: u32, cdw10: u32, wide: bool) -> Vec<u8> {
    let mut p = vec![0u8; if wide { 80 } else { 72 }];
    p[0] = opcode;
    put_u32(&mut p, 4, nsid);
    put_u32(&mut p, 36, 4096);
    put_u32(&mut p, 40, cdw10);
    p
}

/// `struct cxl_send_command` for a RAW opcode (id 2) or a kernel command id.
pub fn cxl_send(id: u32, raw_opcode: u16) -> [u8; 48] {
    let mut p = [0u8; 48];
    put_u32(&mut p, 0, id);
    p[8..10].copy_from_slice(&raw_opcode.to_le_bytes());
    p
}

/// `struct sg_io_hdr` ('S') whose CDB pointer is `cdb`.
pub fn sg_io_v3(cdb: &[u8]) -> [u8; 88] {
    let mut p = [0u8; 88];
    put_u32(&mut p, 0, b'S' as u32);
    p[8] = cdb.len() as u8;
    put_u64(&mut p, 24, cdb.as_ptr() as u64);
    p
}

/// `struct sg_io_v4` ('Q') whose request (CDB) pointer is `cdb`.
pub fn sg_io_v4(cdb: &[u8]) -> [u8; 160] {
    let mut p = [0u8; 160];
    put_u32(&mut p, 0, b'Q' as u32);
    put_u32(&mut p, 12, cdb.len() as u32);
    put_u64(&mut p, 16, cdb.as_ptr() as u64);
    p
}

pub use abi::{
    CXL_MEM_QUERY_COMMANDS, CXL_MEM_SEND_COMMAND, FWCTL_INFO, FWCTL_RPC, NVME_IOCTL_ADMIN64_CMD,
    NVME_IOCTL_ADMIN_CMD, NVME_IOCTL_IO64_CMD, NVME_IOCTL_IO_CMD, SG_IO,
};

/// Set the calling thread's name (what the kernel reports as comm).
pub fn set_thread_name(name: &str) {
    let c = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a valid C string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
}

/// Change only the calling thread's uid/gid (raw syscalls; glibc would change them
/// process-wide). Irreversible for the thread.
pub fn set_thread_ids(uid: u32, gid: u32) {
    // SAFETY: raw credential syscalls on the current thread; results checked by callers
    // through the audit log.
    unsafe {
        libc::syscall(libc::SYS_setresgid, gid, gid, gid);
        libc::syscall(libc::SYS_setresuid, uid, uid, uid);
    }
}

/// The current thread id.
pub fn gettid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// `enum fwctl_device_type` value of a CXL device.
pub const FWCTL_DEVICE_TYPE_CXL: u32 = 2;
/// CXL mailbox opcodes fwctl passes on: Get Supported Features, Get Feature, Set Feature.
pub const CXL_GET_SUPPORTED_FEATURES: u16 = 0x0500;
pub const CXL_GET_FEATURE: u16 = 0x0501;
pub const CXL_SET_FEATURE: u16 = 0x0502;
/// Size of one `struct cxl_feat_entry` in a Get Supported Features reply.
pub const CXL_FEAT_ENTRY_LEN: usize = 48;

/// A `struct fwctl_info` (24 B) whose device data buffer is `data` (kept alive by the caller).
pub fn fwctl_info(data: &mut [u8]) -> [u8; 24] {
    let mut info = [0u8; 24];
    put_u32(&mut info, 0, 24);
    put_u32(&mut info, 12, data.len() as u32);
    put_u64(&mut info, 16, data.as_mut_ptr() as u64);
    info
}

/// `out_device_type` of a `struct fwctl_info` the kernel filled.
pub fn fwctl_info_device_type(info: &[u8; 24]) -> u32 {
    u32::from_le_bytes(info[8..12].try_into().expect("4 bytes"))
}

/// `struct fwctl_rpc_cxl` for Get Supported Features: header with `op_size` 8, then
/// `count` (bytes of entries wanted) and `start_idx`.
pub fn cxl_get_supported_features(count: u32, start_idx: u16) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    put_u32(&mut p, 0, CXL_GET_SUPPORTED_FEATURES as u32);
    put_u32(&mut p, 8, 8);
    put_u32(&mut p, 16, count);
    p[20..22].copy_from_slice(&start_idx.to_le_bytes());
    p
}

/// The errno of a call that failed: `ret` must be -1.
pub fn errno_of(ret: i64) -> i32 {
    assert_eq!(ret, -1, "the call was expected to fail");
    std::io::Error::last_os_error().raw_os_error().expect("an OS error")
}
