//! The bodies the deciding programs share, whatever hook set runs them: an ioctl about to
//! reach its driver (`file_ioctl` for BPF LSM, `security_file_ioctl` for the trampoline
//! set, both `(struct file *file, unsigned int cmd, unsigned long arg)`) and an io_uring
//! command about to reach its driver (`uring_cmd(struct io_uring_cmd *)`). Each returns
//! the verdict; the entry points turn it into their return value. Also the result
//! programs on the ioctl syscalls (fexit), which read the syscall's saved registers.
//!
//! Not for: what a program returns (`lsm`, `trampoline`), or decoding and deciding
//! (`inflight`).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    programs::{FExitContext, LsmContext},
    EbpfContext,
};
use fwctl_common::{
    abi::{ioctl_spec, uring_cmd_spec},
    canary as canary_ids,
    model::verdict,
};

use crate::{canary, device::node_of_file, inflight, maps::offsets};

/// Which program decides: its canary slot, its hook set, and whether it is a backup deny
/// program: it decides again and refuses, and counts and parks the command only when
/// nothing is parked for it (the kernel skipped the deciding program), so a skip costs
/// neither the refusal nor the count.
#[derive(Clone, Copy)]
pub struct Decider {
    pub slot: u32,
    pub hook: u8,
    pub backup: bool,
    /// The backup the kernel runs last on its function (attached first): it clears the
    /// parked command's `FRESH` mark, so the thread's next call can tell a stale one.
    pub last: bool,
}

/// `(struct file *file, unsigned int cmd, unsigned long arg)`: the verdict.
#[inline(always)]
pub fn file_ioctl(ctx: *mut c_void, who: Decider) -> Result<u8, i64> {
    let ctx = LsmContext::new(ctx);
    let cmd: u32 = ctx.arg(1);
    let arg: u64 = ctx.arg(2);
    let off = offsets();
    if cmd == canary_ids::IOCTL {
        if !inflight::is_agent(&off) {
            return Ok(verdict::ALLOW);
        }
        let file = scalar_arg(&ctx, 0)? as *const u8;
        let key = bpf_get_current_pid_tgid();
        return Ok(canary::ioctl(who.slot, node_of_file(file, &off), arg, key, !who.backup));
    }
    let Some(spec) = ioctl_spec(cmd) else {
        return Ok(verdict::ALLOW);
    };
    if inflight::is_agent(&off) {
        return Ok(verdict::ALLOW);
    }
    let file = scalar_arg(&ctx, 0)? as *const u8;
    let node = node_of_file(file, &off);
    let key = bpf_get_current_pid_tgid();
    Ok(decide_or_begin(spec, node, cmd, arg, who, key))
}

/// `(struct io_uring_cmd *ioucmd)` (kernel >= 5.19): an io_uring `IORING_OP_URING_CMD`
/// about to reach the driver's `uring_cmd` handler; no ioctl syscall is involved. Same
/// decode, policy, counters and events as an ioctl; the command waits for its result
/// under the request's address, which `io_uring:io_uring_complete` reports.
#[inline(always)]
pub fn uring_cmd(ctx: *mut c_void, who: Decider) -> Result<u8, i64> {
    let ctx = LsmContext::new(ctx);
    let off = offsets();
    if off.uring_resolved == 0 {
        return Ok(verdict::ALLOW);
    }
    let ioucmd = scalar_arg(&ctx, 0)? as *const u8;
    // SAFETY: kernel reads through bpf_probe_read_kernel, offsets from this kernel's BTF.
    let (cmd_op, file, payload) = unsafe {
        let cmd_op: u32 = bpf_probe_read_kernel(ioucmd.add(off.uring_cmd_op as usize) as *const u32)?;
        let file: u64 = bpf_probe_read_kernel(ioucmd.add(off.uring_cmd_file as usize) as *const u64)?;
        let payload: u64 = bpf_probe_read_kernel(ioucmd.add(off.uring_cmd_payload as usize) as *const u64)?;
        (cmd_op, file, payload)
    };
    if uring_cmd_spec(cmd_op).is_none() {
        return Ok(verdict::ALLOW);
    }
    let arg = payload.wrapping_add(off.uring_payload_skip as u64);
    let node = node_of_file(file as *const u8, &off);
    let key = ioucmd as u64;
    if inflight::is_agent(&off) {
        return Ok(canary::uring(who.slot, node, arg, key, !who.backup));
    }
    // Looked up again here, next to its use: carried across the node resolution, the
    // table pointer was spilled, and the 6.1 verifier lost the index's bound ("R6
    // unbounded memory access" in `decode`).
    let Some(spec) = uring_cmd_spec(core::hint::black_box(cmd_op)) else {
        return Ok(verdict::ALLOW);
    };
    Ok(decide_or_begin(spec, node, cmd_op, arg, who, key))
}

/// The deciding program begins the command (decode, decide, count, park); a backup only
/// decides again, unless nothing of this call is parked (the deciding program was
/// skipped), and then begins it itself. The last backup ends the call's mark.
#[inline(always)]
fn decide_or_begin(
    spec: &fwctl_common::abi::IoctlSpec,
    node: Result<Option<crate::device::Node>, i64>,
    cmd: u32,
    arg: u64,
    who: Decider,
    key: u64,
) -> u8 {
    let verdict = if who.backup && !inflight::backup_takes_over(key) {
        inflight::decide(spec, node, cmd, arg, who.hook)
    } else {
        inflight::begin(spec, node, cmd, arg, who.hook, true, key)
    };
    if who.last {
        inflight::decision_done(key);
    }
    verdict
}

/// The return value of `__x64_sys_ioctl(const struct pt_regs *regs)` or
/// `__ia32_compat_sys_ioctl(...)`, which fexit sees at index 1.
#[inline(always)]
pub fn syscall_ret(ctx: &FExitContext) -> i64 {
    ctx.arg::<i64>(1)
}

/// The returning syscall's argument in saved register `register` (offset in `pt_regs`).
#[inline(always)]
pub fn syscall_arg(ctx: &FExitContext, register: u32) -> Option<u64> {
    // SAFETY: slot 0 of the program's context, then a checked kernel read.
    unsafe {
        let regs: u64 = bpf_probe_read_kernel(ctx.as_ptr() as *const u64).ok()?;
        bpf_probe_read_kernel((regs as *const u8).add(register as usize) as *const u64).ok()
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
