//! Counting and reporting a command, shared by every hook: who sent it (the policy's
//! subject), its count as seen and then as returned, and its audit event. Not for:
//! deciding when a command is complete or stale (`fwctl_common::parked`, via `inflight`).

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    bpf_ktime_get_ns,
};
use fwctl_common::{
    device_number::node_key,
    model::{event_flag, result, stat, CounterKey, Event},
    policy::Subject,
};

use crate::maps::{count_stat, decrement, increment, COUNTERS, EVENTS};

/// Fill in who sent the command (the `subject` the policy saw), on which device, and when
/// (the command itself is already in `event.command`). Fills in place: the event is the
/// largest thing on the hook's stack and must not be copied.
#[inline(always)]
pub fn fill_event(
    event: &mut Event,
    subject: &Subject,
    cmd: u32,
    rdev: u32,
    flags: u32,
    hook: u8,
    verdict: u8,
) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: helper without preconditions.
    event.start_ns = unsafe { bpf_ktime_get_ns() };
    event.cgroup_id = subject.cgroup_id;
    event.pid = (pid_tgid >> 32) as u32;
    event.tid = pid_tgid as u32;
    event.uid = subject.uid;
    event.gid = subject.gid;
    event.rdev = rdev;
    event.flags = flags;
    event.cmd = cmd;
    event.comm = subject.comm;
    event.effects = subject.effects;
    event.verdict = verdict;
    event.hook = hook;
}

/// The policy's view of the current task sending a command to node `rdev`, written in
/// place (no Subject-sized temporary on the caller's frame).
#[inline(always)]
pub fn current_subject(subject: &mut Subject, rdev: u32, flags: u32) {
    let uid_gid = bpf_get_current_uid_gid();
    subject.uid = uid_gid as u32;
    subject.gid = (uid_gid >> 32) as u32;
    subject.comm = bpf_get_current_comm().unwrap_or_default();
    // SAFETY: helper without preconditions.
    subject.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    subject.device = node_key(flags & event_flag::BLOCK_DEVICE != 0, rdev);
    subject.effects = 0;
}

/// Count a command the moment it is seen, as `unobserved` (exact even if no exit hook runs).
#[inline(always)]
pub fn count_seen(event: &Event) {
    increment(&COUNTERS, &CounterKey::new(&event.command, result::UNOBSERVED, event.verdict, event.rule_id));
}

/// Its return value is known: move the count from `unobserved` to ok/error.
#[inline(always)]
pub fn count_returned(event: &Event) {
    decrement(&COUNTERS, &CounterKey::new(&event.command, result::UNOBSERVED, event.verdict, event.rule_id));
    increment(
        &COUNTERS,
        &CounterKey::new(&event.command, result::from_ret(event.ret), event.verdict, event.rule_id),
    );
}

/// Queue the audit event; a full ring buffer is counted.
#[inline(always)]
pub fn emit(event: &Event) {
    if EVENTS.output::<Event>(event, 0).is_err() {
        count_stat(stat::EVENTS_LOST);
    }
}
