//! The two halves every hook shares: `begin` (a passthrough ioctl on a watched device
//! was seen: decode it and park it for the current thread) and `finish` (the syscall
//! returned: add the return value and latency, count it, send the event).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    EbpfContext,
};
use aya_log_ebpf::warn;
use fwctl_common::{
    abi::IoctlSpec,
    model::{decode_status, event_flag, stat, verdict, Event, KernelOffsets},
};

use fwctl_common::policy::decide;

use crate::{
    account, command,
    device::{watched, Node},
    maps::{count_stat, INFLIGHT},
    policy,
};

/// The ioctls the agent itself issues (inventory) are not commands to audit.
#[inline(always)]
pub fn is_agent(off: &KernelOffsets) -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == off.agent_tgid
}

/// Decode, decide and park a passthrough command on the node a hook resolved. Returns
/// the verdict (`can_deny`: the hook runs before the driver and may refuse); does nothing
/// for files that are not watched device nodes, and counts nodes that could not be resolved.
#[inline(always)]
pub fn begin<C: EbpfContext>(
    ctx: &C,
    spec: &IoctlSpec,
    resolved: Result<Option<Node>, i64>,
    cmd: u32,
    arg: u64,
    hook: u8,
    can_deny: bool,
) -> u8 {
    let node = match resolved {
        Ok(Some(node)) => node,
        Ok(None) => return verdict::ALLOW,
        Err(_) => {
            count_stat(stat::FD_UNRESOLVED);
            return verdict::ALLOW;
        }
    };
    let Some(device) = watched(node) else {
        return verdict::ALLOW;
    };
    if device.kind != spec.device_kind {
        return verdict::ALLOW;
    }
    let mut event = Event::default();
    if command::decode(spec, device.driver, arg, &mut event.command) != decode_status::OK {
        count_stat(stat::DECODE_FAILED);
    }
    let flags = if node.block { event_flag::BLOCK_DEVICE } else { 0 };
    account::fill_subject(&mut event, cmd, node.rdev, flags, hook, verdict::ALLOW);
    let decision =
        decide(&policy::Maps, &policy::header(), &event.command, &account::subject(&event), can_deny);
    event.verdict = decision.verdict;
    event.rule_id = decision.rule_id;
    account::count_seen(&event);
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(stale) = INFLIGHT.get_ptr_mut(&pid_tgid) {
        // This thread's previous command never reached an exit hook (skipped program):
        // its count stays `unobserved`; send its event now rather than lose it.
        // SAFETY: map value pointer, valid for this run.
        let stale = unsafe { &mut *stale };
        stale.flags |= event_flag::NO_EXIT;
        account::emit(stale);
    }
    if INFLIGHT.insert(&pid_tgid, &event, 0).is_err() {
        count_stat(stat::PENDING_FULL);
        warn!(ctx, "fwctl-guard: in-flight table full; command counted without its return value");
        event.flags |= event_flag::NO_EXIT;
        account::emit(&event);
    }
    event.verdict
}

/// Complete the current thread's parked command, if it has one. `cmd` is the returning
/// ioctl's number where the hook knows it: a parked command with another number is stale
/// (its own return was missed) and is sent without a return value.
#[inline(always)]
pub fn finish(ret: i64, cmd: Option<u32>) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(event) = INFLIGHT.get_ptr_mut(&pid_tgid) else {
        return;
    };
    // SAFETY: INFLIGHT value pointer, valid for this run; only this thread uses its slot.
    let event = unsafe { &mut *event };
    if cmd.is_some_and(|cmd| cmd != event.cmd) {
        event.flags |= event_flag::NO_EXIT;
    } else {
        event.ret = ret;
        // SAFETY: helper without preconditions.
        event.latency_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(event.start_ns);
        account::count_returned(event);
    }
    account::emit(event);
    let _ = INFLIGHT.remove(&pid_tgid);
}
