//! The two halves every hook shares: `begin` (a passthrough command on a watched device
//! was seen: decode it, decide, count it as seen and park it under its thread or
//! request) and `finish` (its result is known: add the return value and latency, move its
//! count, send the event). Also the agent's own exemption (`is_agent`) and the DECIDED
//! record for the NVMe submission check.
//!
//! Which parked command is stale and which gets a DECIDED record are decided by
//! `fwctl_common::parked` and `fwctl_common::submission`; this module does the map work.

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
};
use aya_ebpf::{macros::map, maps::PerCpuArray};
use fwctl_common::{
    abi::{ioctl_spec, IoctlSpec},
    hook_set,
    lsm::EPERM,
    model::{
        decode_status, event_flag, stat, verdict, Command, Decided, Event, KernelOffsets, NS_PER_USER_TICK,
    },
    parked::{self, Exit},
    policy::{evaluate, Subject},
    submission::expects_submission,
};

use crate::{
    account, canary, command,
    device::{node_of_fd, watched, Node},
    maps::{count_in, count_stat, BYPASS, DECIDED, INFLIGHT, META},
    policy, toctou,
};

/// The ioctls the agent itself issues (inventory, effects reads) are not commands to
/// audit. The tgid alone is not enough: after a crash, another process could get the
/// agent's pid, so its group leader's start time must match too.
#[inline(always)]
pub fn is_agent(off: &KernelOffsets) -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(meta) = META.get(0) else { return false };
    meta.agent_tgid == tgid && leader_start_ticks(off).is_ok_and(|ticks| ticks == meta.agent_start_ticks)
}

fn leader_start_ticks(off: &KernelOffsets) -> Result<u64, i64> {
    // SAFETY: reads of the current task's own group_leader and its start time, offsets
    // from this kernel's BTF.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let leader: *const u8 = bpf_probe_read_kernel(task.add(off.task_group_leader as usize) as *const _)?;
        let start: u64 = bpf_probe_read_kernel(leader.add(off.task_start_boottime as usize) as *const _)?;
        Ok(start / NS_PER_USER_TICK)
    }
}

/// Decode, decide and park a passthrough command on the node a hook resolved. Returns
/// the verdict (`can_deny`: the hook runs before the driver and may refuse); does nothing
/// for files that are not watched device nodes, and counts nodes that could not be resolved.
/// `key` is where the command waits for its result: the thread (`pid_tgid`) for an ioctl,
/// the request for an io_uring command (which completes elsewhere).
#[inline(always)]
pub fn begin(
    spec: &IoctlSpec,
    resolved: Result<Option<Node>, i64>,
    cmd: u32,
    arg: u64,
    hook: u8,
    can_deny: bool,
    key: u64,
) -> u8 {
    let Some((node, driver)) = passthrough_node(spec, resolved, true) else {
        return verdict::ALLOW;
    };
    let mut decoded = Command::new(0, 0, 0);
    if command::decode(spec, driver, arg, &mut decoded) != decode_status::OK {
        count_stat(stat::DECODE_FAILED);
    }
    let mut seen = Seen::new(key, cmd, node, hook, can_deny);
    apply_policy(&decoded, &mut seen);
    park(&decoded, &seen)
}

/// The watched node and its driver, when `resolved` is a node of the kind `spec` is for;
/// a node that could not be resolved is counted (`count_unresolved`).
#[inline(always)]
fn passthrough_node(
    spec: &IoctlSpec,
    resolved: Result<Option<Node>, i64>,
    count_unresolved: bool,
) -> Option<(Node, u8)> {
    let node = match resolved {
        Ok(Some(node)) => node,
        Ok(None) => return None,
        Err(_) => {
            if count_unresolved {
                count_stat(stat::FD_UNRESOLVED);
            }
            return None;
        }
    };
    let device = watched(node)?;
    (device.kind == spec.device_kind).then_some((node, device.driver))
}

/// Whether a backup deny program takes over the deciding program's work (count, park,
/// event) for the command under `key` (`parked::backup_takes_over`).
#[inline(always)]
pub fn backup_takes_over(key: u64) -> bool {
    // SAFETY: plain data read.
    parked::backup_takes_over(unsafe { INFLIGHT.get(&key) }.map(|e| e.flags))
}

/// The call's last backup ran: what is parked under `key` is no longer this call's.
#[inline(always)]
pub fn decision_done(key: u64) {
    if let Some(event) = INFLIGHT.get_ptr_mut(&key) {
        // SAFETY: INFLIGHT value pointer, valid for this run.
        unsafe { (*event).flags &= !event_flag::FRESH };
    }
}

/// The verdict of a backup deny program (the trampoline set) when the deciding program
/// parked the command: decode and decide again, count and park nothing.
/// Inlined into the program like [`begin`]: a `Result`/`Option` argument of a BPF
/// subprogram gets BTF the kernel refuses (a union member at a non-zero offset).
#[inline(always)]
pub fn decide(spec: &IoctlSpec, resolved: Result<Option<Node>, i64>, cmd: u32, arg: u64, hook: u8) -> u8 {
    let Some((node, driver)) = passthrough_node(spec, resolved, false) else {
        return verdict::ALLOW;
    };
    let mut decoded = Command::new(0, 0, 0);
    command::decode(spec, driver, arg, &mut decoded);
    let mut seen = Seen::new(0, cmd, node, hook, true);
    apply_policy(&decoded, &mut seen)
}

/// The result program of the trampoline set found nothing parked for a passthrough
/// command: its deciding program was skipped. Decide it now, after the fact, count it,
/// and send its event marked [`event_flag::OBSERVER_SKIPPED`]; a command the policy
/// denies that still reached the driver (`ret` is not -EPERM: every backup was skipped
/// too) is a bypass, counted and marked like a TOCTOU race (and killed under
/// `on_toctou: kill`).
#[inline(never)]
fn catch_skipped(spec: &IoctlSpec, returned: &Returned) {
    let Returned { node, driver, cmd, arg, ret, slot } = *returned;
    // The command and decision live in a per-CPU slot of this result program, not on the
    // stack: with them, the chain result program -> catch_skipped -> park exceeds the
    // verifier's 512 bytes (6.1 and 6.12 count 576 and 560). One slot per result program,
    // as the kernel never runs one program twice at once on a CPU.
    let index = if slot == fwctl_common::canary::slot::FEXIT_SYS_IOCTL_CHECKED { 0 } else { 1 };
    let Some(caught) = CAUGHT.get_ptr_mut(index) else { return };
    // SAFETY: per-CPU map value, valid for this run, used by this program alone.
    let caught = unsafe { &mut *caught };
    let key = bpf_get_current_pid_tgid();
    caught.decoded = Command::new(0, 0, 0);
    if command::decode(spec, driver, arg, &mut caught.decoded) != decode_status::OK {
        count_stat(stat::DECODE_FAILED);
    }
    caught.seen = Seen::new(key, cmd, node, hook_set::id::TRAMPOLINE, true);
    caught.seen.flags |= event_flag::OBSERVER_SKIPPED;
    if apply_policy(&caught.decoded, &mut caught.seen) == verdict::DENY && ret != -EPERM {
        caught.seen.verdict = verdict::WOULD_DENY;
        caught.seen.flags |= event_flag::BYPASS;
        count_in(&BYPASS, caught.decoded.class as u32);
        caught.seen.flags |= toctou::answer();
    }
    park(&caught.decoded, &caught.seen);
    finish_key(key, ret, Some(cmd), slot);
}

/// `catch_skipped`'s working set (see there).
#[repr(C)]
struct Caught {
    decoded: Command,
    seen: Seen,
}

#[map]
static CAUGHT: PerCpuArray<Caught> = PerCpuArray::with_max_entries(2, 0);

/// What the hook knows besides the decoded command. Passed by reference: BPF
/// subprograms take at most five register arguments, and older verifiers (7.2 refused
/// this with "stack arg1 is not initialized") do not accept more on the stack.
#[repr(C)]
struct Seen {
    key: u64,
    cmd: u32,
    rdev: u32,
    flags: u32,
    hook: u8,
    can_deny: u8,
    /// Set by `apply_policy`: its decision, and the sending task it was made for (read
    /// once, reused for the event).
    verdict: u8,
    rule_id: u16,
    subject: Subject,
}

impl Seen {
    #[inline(always)]
    fn new(key: u64, cmd: u32, node: Node, hook: u8, can_deny: bool) -> Self {
        Self {
            key,
            cmd,
            rdev: node.rdev,
            flags: if node.block { event_flag::BLOCK_DEVICE } else { 0 },
            hook,
            can_deny: can_deny as u8,
            verdict: verdict::ALLOW,
            rule_id: 0,
            subject: Subject::default(),
        }
    }
}

/// Build the event for a decoded and decided command, count it as seen and park it for
/// the exit hook; a command still parked under the same key is sent without its result.
/// Not inlined, like `command::decode` and `apply_policy`: each keeps its buffers in its
/// own stack frame, side by side rather than stacked, so the hook's call chain stays under
/// the verifier's 512-byte limit.
#[inline(never)]
fn park(decoded: &Command, seen: &Seen) -> u8 {
    let mut event = Event { command: *decoded, rule_id: seen.rule_id, ..Event::default() };
    let flags = seen.flags | event_flag::FRESH;
    account::fill_event(&mut event, &seen.subject, seen.cmd, seen.rdev, flags, seen.hook, seen.verdict);
    account::count_seen(&event);
    let key = seen.key;
    if let Some(stale) = INFLIGHT.get_ptr_mut(&key) {
        // This thread's previous command never reached an exit hook (skipped program):
        // its count stays `unobserved`; send its event now rather than lose it.
        // SAFETY: map value pointer, valid for this run.
        let stale = unsafe { &mut *stale };
        parked::mark_unreturned(stale);
        account::emit(stale);
    }
    if INFLIGHT.insert(&key, &event, 0).is_err() {
        // No log line here: aya-log's frames on top of this one exceed the verifier's
        // 512-byte stack for the whole chain. The stat is exported.
        count_stat(stat::PENDING_FULL);
        parked::mark_unreturned(&mut event);
        account::emit(&event);
        return event.verdict;
    }
    expect_submission(key, decoded, event.verdict);
    event.verdict
}

/// Remember an NVMe command that will reach the driver, so its submission can be
/// compared with what was decided (`mailbox`; which commands: `expects_submission`).
#[inline(always)]
fn expect_submission(key: u64, command: &Command, verdict: u8) {
    if !expects_submission(command, verdict) {
        return;
    }
    let decided = Decided { key, opcode: command.opcode, class: command.class, _pad: [0; 3] };
    let _ = DECIDED.insert(&bpf_get_current_pid_tgid(), &decided, 0);
}

/// Evaluate the active policy for a decoded command sent by the current task; records
/// the verdict and rule in `seen`. Not inlined (see `park`): called beside `park`, not
/// from it, so the policy walk's frame never stacks on the event's.
#[inline(never)]
fn apply_policy(command: &Command, seen: &mut Seen) -> u8 {
    account::current_subject(&mut seen.subject, seen.rdev, seen.flags);
    let decision = evaluate(&policy::Maps, policy::header(), command, &mut seen.subject, seen.can_deny != 0);
    seen.verdict = decision.verdict;
    seen.rule_id = decision.rule_id;
    decision.verdict
}

/// Complete the current thread's parked command, if it has one. `cmd` is the returning
/// ioctl's number where the hook knows it: a parked command with another number is stale
/// (its own return was missed) and is sent without a return value (`parked::on_return`).
/// `slot`: the result program's canary slot.
#[inline(always)]
pub fn finish(ret: i64, cmd: Option<u32>, slot: u32) {
    finish_key(bpf_get_current_pid_tgid(), ret, cmd, slot)
}

/// [`finish`] for the trampoline set, which also catches what its skipped deciding
/// program missed: `fd` and `arg` are the returning ioctl's.
#[inline(always)]
pub fn finish_or_catch(ret: i64, cmd: u32, fd: u64, arg: u64, off: &KernelOffsets, slot: u32) {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: only the presence is looked at.
    if unsafe { INFLIGHT.get(&key) }.is_some() {
        return finish_key(key, ret, Some(cmd), slot);
    }
    let Some(spec) = ioctl_spec(cmd) else { return };
    if is_agent(off) {
        return;
    }
    let Some((node, driver)) = passthrough_node(spec, node_of_fd(fd, off), true) else {
        return;
    };
    catch_skipped(spec, &Returned { node, driver, cmd, arg, ret, slot });
}

/// A returning ioctl on a watched node, as the result program read it. One struct
/// argument: BPF subprograms take at most five, and no `Result`/`Option` (their BTF is
/// refused by the kernel).
#[derive(Clone, Copy)]
struct Returned {
    node: Node,
    driver: u8,
    cmd: u32,
    arg: u64,
    ret: i64,
    /// The result program's canary slot.
    slot: u32,
}

/// [`finish`] for the command parked under `key`.
#[inline(always)]
pub fn finish_key(key: u64, ret: i64, cmd: Option<u32>, slot: u32) {
    let Some(event) = INFLIGHT.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: INFLIGHT value pointer, valid for this run; only this thread uses its slot.
    let event = unsafe { &mut *event };
    if event.flags & event_flag::CANARY != 0 {
        canary::returned(slot);
        let _ = INFLIGHT.remove(&key);
        return;
    }
    match parked::on_return(event.cmd, cmd) {
        Exit::Stale => parked::mark_unreturned(event),
        Exit::Returned => {
            // SAFETY: helper without preconditions.
            parked::complete(event, ret, unsafe { bpf_ktime_get_ns() });
            account::count_returned(event);
        }
    }
    account::emit(event);
    forget_submission(((event.pid as u64) << 32) | event.tid as u64, key);
    let _ = INFLIGHT.remove(&key);
}

/// The command parked under `key` is done: drop its thread's pending submission check,
/// unless that thread has since decided another command.
#[inline(always)]
fn forget_submission(pid_tgid: u64, key: u64) {
    // SAFETY: plain data read.
    if unsafe { DECIDED.get(&pid_tgid) }.is_some_and(|d| d.key == key) {
        let _ = DECIDED.remove(&pid_tgid);
    }
}
