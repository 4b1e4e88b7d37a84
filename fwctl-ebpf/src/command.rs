//! Hook-agnostic decode: copy the ioctl argument (and the payload head it points at) from
//! user memory into fixed buffers and run the shared `fwctl_common::decode` functions.
//! Not for: the layouts themselves, which `fwctl_common::decode` holds and tests.

use aya_ebpf::helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_user};
use fwctl_common::{
    abi::IoctlSpec,
    decode::{self, ARG_MAX, PAYLOAD_HEAD},
    model::Command,
};

/// Copy `len` (clamped to N) bytes of user memory into `buf`; false if the copy failed.
///
/// The buffer is zeroed first with a volatile memset: LLVM drops a plain zero-init before
/// the helper writes the buffer, and older verifiers (6.1) do not count a variable-length
/// helper write as initializing the stack, so the decoders' fixed-offset reads would be
/// refused as reads of uninitialized stack.
#[inline(always)]
fn read_user<const N: usize>(buf: &mut [u8; N], ptr: u64, len: u32) -> bool {
    read_into(buf, ptr, len, false)
}

/// [`read_user`] for user or (`kernel`) kernel memory.
#[inline(always)]
pub fn read_into<const N: usize>(buf: &mut [u8; N], ptr: u64, len: u32, kernel: bool) -> bool {
    // SAFETY: writes exactly N bytes into `buf`.
    unsafe { core::intrinsics::volatile_set_memory(buf.as_mut_ptr(), 0, N) };
    let len = if len > N as u32 { N as u32 } else { len };
    let dst = buf.as_mut_ptr() as *mut _;
    // SAFETY: the helpers write at most `len` <= N bytes into `buf` and validate `ptr`.
    unsafe {
        if kernel {
            bpf_probe_read_kernel(dst, len, ptr as *const _) == 0
        } else {
            bpf_probe_read_user(dst, len, ptr as *const _) == 0
        }
    }
}

/// Decode the command an ioctl carries into `command`. `arg` is the ioctl's user pointer.
///
/// A separate BPF function (not inlined) so its buffers get their own stack frame instead
/// of adding to the hook's: the verifier's limit is 512 bytes for the whole call chain.
/// Returns the decode status (also stored in `command.decode`): a BPF subprogram must
/// return a scalar, never the stack pointer LLVM would otherwise leave in r0.
#[inline(never)]
pub fn decode(spec: &IoctlSpec, driver: u8, arg: u64, command: &mut Command) -> u8 {
    *command = decode::start(spec, driver);
    if spec.arg_len == 0 {
        return command.decode;
    }
    let mut arg_buf = [0u8; ARG_MAX];
    if !read_into(&mut arg_buf, arg, spec.arg_len as u32, spec.arg_in_kernel) {
        decode::arg_unreadable(command);
        return command.decode;
    }
    let Some(follow) = decode::decode_arg(spec, &arg_buf, command) else {
        return command.decode;
    };
    let mut head = [0u8; PAYLOAD_HEAD];
    if !read_user(&mut head, follow.ptr, follow.len) {
        decode::payload_unreadable(command);
        return command.decode;
    }
    decode::decode_payload(&follow, &head, command);
    command.decode
}
