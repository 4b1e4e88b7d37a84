//! The LSM hook path (kernels with BPF LSM): `lsm/file_ioctl` and, on kernels >= 6.8,
//! `lsm/file_ioctl_compat` see the `struct file` directly (no fd-table walk) before the
//! driver runs; `fexit` on the ioctl syscalls completes the command with its return value.
//! `lsm/uring_cmd` does the same for io_uring passthrough commands (results: `uring`).
//! No syscall tracepoint is attached, so unrelated syscalls pay nothing.
//!
//! Not for: the syscall-tracepoint fallback (`syscall_tp`), or how an earlier BPF LSM
//! program's refusal is passed on (`fwctl_common::lsm`).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::fexit,
    programs::{FExitContext, LsmContext},
    EbpfContext,
};
use fwctl_common::{
    abi::{ioctl_spec, uring_cmd_spec},
    hook_set,
    lsm::{earlier_verdict, EarlierVerdict, EACCES, EPERM},
    model::{stat, verdict},
};

use crate::{
    device::node_of_file,
    inflight,
    maps::{count_stat, offsets},
};

// Written without aya's `#[lsm]` macro, whose wrapper returns i32: LLVM then builds a
// negative return value with its upper 32 bits zero (`r0 = 0xffffffff`), and the
// verifier, which checks all 64 bits of R0 against [-MAX_ERRNO, 0], refuses it. The
// section name is what tells aya (and the kernel) this is an LSM program.

/// `file_ioctl(struct file *file, unsigned int cmd, unsigned long arg)`; argument 3 is
/// the verdict of the BPF LSM programs before this one.
#[no_mangle]
#[link_section = "lsm/file_ioctl"]
pub fn fwctl_lsm_file_ioctl(ctx: *mut c_void) -> i64 {
    let ctx = LsmContext::new(ctx);
    gate(ctx.arg(3), || observe(&ctx))
}

/// Same arguments as `file_ioctl`, for 32-bit callers (kernels >= 6.8).
#[no_mangle]
#[link_section = "lsm/file_ioctl_compat"]
pub fn fwctl_lsm_file_ioctl_compat(ctx: *mut c_void) -> i64 {
    let ctx = LsmContext::new(ctx);
    gate(ctx.arg(3), || observe(&ctx))
}

/// An LSM program's return value: an earlier BPF LSM program's refusal (`previous`) stays
/// a refusal (`fwctl_common::lsm::earlier_verdict`) and the command is not looked at;
/// otherwise `observe` decodes, decides and parks it, and a deny refuses it.
///
/// Every refusal is counted before it returns, and every return is a literal. Besides
/// being worth counting, the count keeps each return a plain constant: without a side
/// effect LLVM folds the branches into `-(deny & 1)`, a BPF_NEG whose result verifiers
/// before 6.13 leave unbounded, and they refuse the program ("R0 has unknown scalar value").
#[inline(always)]
fn gate(previous: i64, observe: impl FnOnce() -> Result<u8, i64>) -> i64 {
    let earlier = earlier_verdict(previous);
    if earlier != EarlierVerdict::Allowed {
        count_stat(stat::REFUSED_EARLIER);
        if earlier == EarlierVerdict::DeniedEacces {
            return -EACCES;
        }
        return -EPERM;
    }
    if let Ok(verdict::DENY) = observe() {
        count_stat(stat::REFUSED_POLICY);
        return -EPERM;
    }
    0
}

/// `__x64_sys_ioctl(const struct pt_regs *regs)`: argument 0, return value at index 1;
/// the ioctl's cmd is in regs->si.
#[fexit(function = "__x64_sys_ioctl")]
pub fn fwctl_fexit_sys_ioctl(ctx: FExitContext) -> i32 {
    let cmd = syscall_cmd(&ctx, offsets().pt_regs_si);
    inflight::finish(ctx.arg::<i64>(1), cmd);
    0
}

/// The 32-bit entry point, same shape; cmd is in regs->cx.
#[fexit(function = "__ia32_compat_sys_ioctl")]
pub fn fwctl_fexit_compat_sys_ioctl(ctx: FExitContext) -> i32 {
    let cmd = syscall_cmd(&ctx, offsets().pt_regs_cx);
    inflight::finish(ctx.arg::<i64>(1), cmd);
    0
}

/// The returning syscall's cmd argument, from its saved registers.
#[inline(always)]
fn syscall_cmd(ctx: &FExitContext, register: u32) -> Option<u32> {
    // SAFETY: slot 0 of the program's context, then a checked kernel read.
    unsafe {
        let regs: u64 = bpf_probe_read_kernel(ctx.as_ptr() as *const u64).ok()?;
        bpf_probe_read_kernel((regs as *const u8).add(register as usize) as *const u64).ok().map(|v| v as u32)
    }
}

/// Argument `n` as a plain number. `ctx.arg()` would hand the verifier a trusted BTF
/// pointer, on which it forbids the variable-offset arithmetic `device::node_of_file` does
/// with BTF-derived offsets; the kernel reads go through bpf_probe_read_kernel anyway.
#[inline(always)]
fn scalar_arg(ctx: &LsmContext, n: usize) -> Result<u64, i64> {
    // SAFETY: reads slot `n` of the program's own context array.
    unsafe { bpf_probe_read_kernel((ctx.as_ptr() as *const u64).add(n)) }.map_err(|e| e as i64)
}

/// `file_ioctl(struct file *file, unsigned int cmd, unsigned long arg)`: the verdict.
fn observe(ctx: &LsmContext) -> Result<u8, i64> {
    let cmd: u32 = ctx.arg(1);
    let Some(spec) = ioctl_spec(cmd) else {
        return Ok(verdict::ALLOW);
    };
    let off = offsets();
    if inflight::is_agent(&off) {
        return Ok(verdict::ALLOW);
    }
    let file = scalar_arg(ctx, 0)? as *const u8;
    let arg: u64 = ctx.arg(2);
    let key = bpf_get_current_pid_tgid();
    Ok(inflight::begin(spec, node_of_file(file, &off), cmd, arg, hook_set::id::LSM, true, key))
}

/// `lsm/uring_cmd` (kernel >= 6.0): an io_uring `IORING_OP_URING_CMD` about to reach the
/// driver's `uring_cmd` handler; no ioctl syscall is involved. Same decode, policy,
/// counters and events as an ioctl; the command waits for its result under the request's
/// address, which `io_uring:io_uring_complete` reports.
#[no_mangle]
#[link_section = "lsm/uring_cmd"]
pub fn fwctl_lsm_uring_cmd(ctx: *mut c_void) -> i64 {
    let ctx = LsmContext::new(ctx);
    gate(ctx.arg(1), || observe_uring_cmd(&ctx))
}

/// `uring_cmd(struct io_uring_cmd *ioucmd)`: the verdict.
fn observe_uring_cmd(ctx: &LsmContext) -> Result<u8, i64> {
    let off = offsets();
    if off.uring_resolved == 0 || inflight::is_agent(&off) {
        return Ok(verdict::ALLOW);
    }
    let ioucmd = scalar_arg(ctx, 0)? as *const u8;
    // SAFETY: kernel reads through bpf_probe_read_kernel, offsets from this kernel's BTF.
    let (cmd_op, file, payload) = unsafe {
        let cmd_op: u32 = bpf_probe_read_kernel(ioucmd.add(off.uring_cmd_op as usize) as *const u32)?;
        let file: u64 = bpf_probe_read_kernel(ioucmd.add(off.uring_cmd_file as usize) as *const u64)?;
        let payload: u64 = bpf_probe_read_kernel(ioucmd.add(off.uring_cmd_payload as usize) as *const u64)?;
        (cmd_op, file, payload)
    };
    let Some(spec) = uring_cmd_spec(cmd_op) else {
        return Ok(verdict::ALLOW);
    };
    let arg = payload.wrapping_add(off.uring_payload_skip as u64);
    let node = node_of_file(file as *const u8, &off);
    Ok(inflight::begin(spec, node, cmd_op, arg, hook_set::id::LSM, true, ioucmd as u64))
}
