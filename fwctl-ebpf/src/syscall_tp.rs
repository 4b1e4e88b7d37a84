//! The syscall-tracepoint hook (`syscalls:sys_enter_ioctl` / `sys_exit_ioctl`): the
//! fallback for kernels without BPF LSM. It can observe, not deny. Entry decodes and parks
//! the command in `INFLIGHT`; exit adds the return value and latency and accounts it.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::warn;
use fwctl_common::{
    abi::ioctl_spec,
    model::{decode_status, event_flag, hook, stat, verdict, Event},
};

use crate::{
    account, command,
    device::{node_of_fd, watched},
    maps::{count_stat, offsets, INFLIGHT},
};

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn fwctl_sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    let _ = try_sys_enter_ioctl(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ioctl")]
pub fn fwctl_sys_exit_ioctl(ctx: TracePointContext) -> u32 {
    let _ = try_sys_exit_ioctl(&ctx);
    0
}

fn try_sys_enter_ioctl(ctx: &TracePointContext) -> Result<(), i64> {
    let off = offsets();
    // SAFETY: offsets come from this kernel's tracefs format file.
    let cmd = unsafe { ctx.read_at::<u64>(off.sys_enter_cmd as usize) }? as u32;
    let Some(spec) = ioctl_spec(cmd) else {
        return Ok(());
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 == off.agent_tgid {
        return Ok(());
    }
    let fd = unsafe { ctx.read_at::<u64>(off.sys_enter_fd as usize) }?;
    let arg = unsafe { ctx.read_at::<u64>(off.sys_enter_arg as usize) }?;
    let node = match node_of_fd(fd, &off) {
        Ok(Some(node)) => node,
        Ok(None) => return Ok(()),
        Err(e) => {
            count_stat(stat::FD_UNRESOLVED);
            return Err(e);
        }
    };
    let Some(device) = watched(node) else {
        return Ok(());
    };
    if device.kind != spec.device_kind {
        return Ok(());
    }
    let mut event = Event::default();
    let status = command::decode(spec, device.driver, arg, &mut event.command);
    if status != decode_status::OK {
        count_stat(stat::DECODE_FAILED);
    }
    let flags = if node.block { event_flag::BLOCK_DEVICE } else { 0 };
    account::fill_subject(&mut event, cmd, node.rdev, flags, hook::SYSCALL_TRACEPOINT, verdict::ALLOW);
    if INFLIGHT.insert(&pid_tgid, &event, 0).is_err() {
        // Never lose the count: account it now, without a return value.
        count_stat(stat::PENDING_FULL);
        warn!(ctx, "fwctl-guard: in-flight table full; command counted without its return value");
        event.flags |= event_flag::NO_EXIT;
        account::complete(&event);
    }
    Ok(())
}

fn try_sys_exit_ioctl(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(event) = INFLIGHT.get_ptr_mut(&pid_tgid) else {
        return Ok(());
    };
    let off = offsets();
    // SAFETY: INFLIGHT value pointer, valid for this run; only this task writes its slot.
    let event = unsafe { &mut *event };
    event.ret = unsafe { ctx.read_at::<i64>(off.sys_exit_ret as usize) }.unwrap_or(0);
    event.latency_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(event.start_ns);
    account::complete(event);
    let _ = INFLIGHT.remove(&pid_tgid);
    Ok(())
}
