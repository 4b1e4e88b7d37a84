//! The syscall-tracepoint hook (`syscalls:sys_enter_ioctl` / `sys_exit_ioctl`): the
//! fallback for kernels without BPF LSM. It observes; it cannot deny. Any syscall
//! tracepoint puts every syscall of every task on the tracing slow path, so the agent
//! attaches these only when the LSM hook cannot load.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use fwctl_common::{
    abi::ioctl_spec,
    canary::{self as canary_ids, slot},
    hook_set,
};

use crate::{canary, device::node_of_fd, inflight, maps::offsets};

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn fwctl_sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    let _ = try_sys_enter_ioctl(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ioctl")]
pub fn fwctl_sys_exit_ioctl(ctx: TracePointContext) -> u32 {
    let off = offsets();
    // SAFETY: offset from this kernel's tracefs format file.
    if let Ok(ret) = unsafe { ctx.read_at::<i64>(off.sys_exit_ret as usize) } {
        inflight::finish(ret, None, slot::SYS_EXIT_IOCTL);
    }
    0
}

fn try_sys_enter_ioctl(ctx: &TracePointContext) -> Result<(), i64> {
    let off = offsets();
    // SAFETY: offsets come from this kernel's tracefs format file.
    let cmd = unsafe { ctx.read_at::<u64>(off.sys_enter_cmd as usize) }? as u32;
    let fd = unsafe { ctx.read_at::<u64>(off.sys_enter_fd as usize) }?;
    let arg = unsafe { ctx.read_at::<u64>(off.sys_enter_arg as usize) }?;
    let key = bpf_get_current_pid_tgid();
    if cmd == canary_ids::IOCTL {
        if inflight::is_agent(&off) {
            canary::ioctl(slot::SYS_ENTER_IOCTL, node_of_fd(fd, &off), arg, key, true);
        }
        return Ok(());
    }
    let Some(spec) = ioctl_spec(cmd) else {
        return Ok(());
    };
    if inflight::is_agent(&off) {
        return Ok(());
    }
    inflight::begin(spec, node_of_fd(fd, &off), cmd, arg, hook_set::id::TRACEPOINT, false, key);
    Ok(())
}
