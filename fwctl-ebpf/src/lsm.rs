//! The LSM hook path (kernels with BPF LSM): `lsm/file_ioctl` and, on kernels >= 6.8,
//! `lsm/file_ioctl_compat` see the `struct file` directly (no fd-table walk) before the
//! driver runs; `fexit` on the ioctl syscalls completes the command with its return value.
//! No syscall tracepoint is attached, so unrelated syscalls pay nothing.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{fexit, lsm},
    programs::{FExitContext, LsmContext},
    EbpfContext,
};
use fwctl_common::{
    abi::ioctl_spec,
    model::{hook, verdict},
};

use crate::{device::node_of_file, inflight, maps::offsets};

#[lsm(hook = "file_ioctl")]
pub fn fwctl_lsm_file_ioctl(ctx: LsmContext) -> i32 {
    file_ioctl(&ctx)
}

#[lsm(hook = "file_ioctl_compat")]
pub fn fwctl_lsm_file_ioctl_compat(ctx: LsmContext) -> i32 {
    file_ioctl(&ctx)
}

/// Argument 3 is the verdict of the LSM programs before this one: keep it. It is read as
/// 64 bits and returned untouched because the verifier checks the whole of R0 against
/// [-MAX_ERRNO, 0]; a value round-tripped through a 32-bit stack slot comes back
/// zero-extended and is refused.
#[inline(always)]
fn file_ioctl(ctx: &LsmContext) -> i32 {
    let previous: i64 = ctx.arg(3);
    if previous != 0 {
        return previous as i32;
    }
    match observe(ctx) {
        Ok(verdict::DENY) => -EPERM,
        _ => 0,
    }
}

const EPERM: i32 = 1;

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
    Ok(inflight::begin(ctx, spec, node_of_file(file, &off), cmd, arg, hook::LSM, true))
}
