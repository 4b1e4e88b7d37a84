//! The LSM hook path (kernels with BPF LSM): `lsm/file_ioctl` and, on kernels >= 6.8,
//! `lsm/file_ioctl_compat` see the `struct file` directly (no fd-table walk) before the
//! driver runs; `fexit` on the ioctl syscalls completes the command with its return value.
//! No syscall tracepoint is attached, so unrelated syscalls pay nothing.

use aya_ebpf::{
    macros::{fexit, lsm},
    programs::{FExitContext, LsmContext},
};
use fwctl_common::{
    abi::ioctl_spec,
    model::{hook, stat},
};

use crate::{
    device::node_of_file,
    inflight,
    maps::{count_stat, offsets},
};

#[lsm(hook = "file_ioctl")]
pub fn fwctl_lsm_file_ioctl(ctx: LsmContext) -> i32 {
    try_file_ioctl(&ctx).unwrap_or(0)
}

#[lsm(hook = "file_ioctl_compat")]
pub fn fwctl_lsm_file_ioctl_compat(ctx: LsmContext) -> i32 {
    try_file_ioctl(&ctx).unwrap_or(0)
}

/// `__x64_sys_ioctl(const struct pt_regs *regs)`: argument 0, return value at index 1.
#[fexit(function = "__x64_sys_ioctl")]
pub fn fwctl_fexit_sys_ioctl(ctx: FExitContext) -> i32 {
    inflight::finish(ctx.arg::<i64>(1));
    0
}

/// The 32-bit entry point, same shape.
#[fexit(function = "__ia32_compat_sys_ioctl")]
pub fn fwctl_fexit_compat_sys_ioctl(ctx: FExitContext) -> i32 {
    inflight::finish(ctx.arg::<i64>(1));
    0
}

/// `file_ioctl(struct file *file, unsigned int cmd, unsigned long arg)`; argument 3 is
/// the verdict of the LSM programs before this one.
fn try_file_ioctl(ctx: &LsmContext) -> Result<i32, i64> {
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return Ok(previous);
    }
    let cmd: u32 = ctx.arg(1);
    let Some(spec) = ioctl_spec(cmd) else {
        return Ok(0);
    };
    let off = offsets();
    if inflight::is_agent(&off) {
        return Ok(0);
    }
    let file: *const u8 = ctx.arg(0);
    let arg: u64 = ctx.arg(2);
    let node = match node_of_file(file, &off) {
        Ok(Some(node)) => node,
        Ok(None) => return Ok(0),
        Err(e) => {
            count_stat(stat::FD_UNRESOLVED);
            return Err(e);
        }
    };
    inflight::begin(ctx, spec, node, cmd, arg, hook::LSM);
    Ok(0)
}
