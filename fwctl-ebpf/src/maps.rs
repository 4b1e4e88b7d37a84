//! Every map and global the programs share with the agent, and the counter updates on
//! them. The names are a contract: `fwctl_common::object` lists them for the agent, and an
//! agent test checks that the built object has exactly those. Not for: what the values
//! mean (the types are `fwctl_common::model`'s and `fwctl_common::policy`'s).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use fwctl_common::{
    effects::EffectsKey,
    model::{
        stat, AgentMeta, CounterKey, Decided, DeviceInfo, Event, KernelOffsets, MailboxKey, MailboxPending,
        RuleName,
    },
    policy::{CompiledRule, IndexKey, PolicyHeader, MAX_RULES},
};

/// Device nodes to watch: `device_number::device_key(block, major, minor|ANY_MINOR)` ->
/// kind and driver.
#[map]
pub static DEVICES: HashMap<u64, DeviceInfo> = HashMap::with_max_entries(4096, 0);

/// Commands between syscall entry and exit, by pid_tgid.
#[map]
pub static INFLIGHT: HashMap<u64, Event> = HashMap::with_max_entries(16384, 0);

/// NVMe commands let through and not yet submitted, by the deciding thread's pid_tgid:
/// the first NVMe submission of that thread is checked against it.
#[map]
pub static DECIDED: HashMap<u64, Decided> = HashMap::with_max_entries(16384, 0);

/// Self-test canaries each program saw, by its `canary::slot` (per CPU).
#[map]
pub static CANARY: PerCpuArray<u64> = PerCpuArray::with_max_entries(fwctl_common::canary::SLOTS, 0);

/// Commands the policy denies that reached the driver because every deny program of the
/// trampoline set was skipped, by command class (per CPU).
#[map]
pub static BYPASS: PerCpuArray<u64> = PerCpuArray::with_max_entries(8, 0);

/// Payloads that changed between decision and driver, by command class (per CPU).
#[map]
pub static TOCTOU: PerCpuArray<u64> = PerCpuArray::with_max_entries(8, 0);

/// Exact command counters (summed over CPUs by the agent).
#[map]
pub static COUNTERS: PerCpuHashMap<CounterKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// Admin-queue mailbox commands between the driver's submit and complete tracepoints.
#[map]
pub static MAILBOX_PENDING: HashMap<u64, MailboxPending> = HashMap::with_max_entries(4096, 0);

/// Mailbox commands seen at the driver's tracepoints, by opcode, origin and status.
#[map]
pub static MAILBOX_COUNTERS: PerCpuHashMap<MailboxKey, u64> = PerCpuHashMap::with_max_entries(4096, 0);

/// The active policy's header (one entry): which slot is live, mode, defaults.
#[map]
pub static POLICY: Array<PolicyHeader> = Array::with_max_entries(1, 0);

/// Compiled rules, `slot * MAX_RULES + index`.
#[map]
pub static RULES: Array<CompiledRule> = Array::with_max_entries(2 * MAX_RULES as u32, 0);

/// Candidate rules per (slot, class, driver, opcode).
#[map]
pub static POLICY_INDEX: HashMap<IndexKey, u64> = HashMap::with_max_entries(16384, 0);

/// What each device node declares about its opcodes (written by the agent from the CXL
/// CEL, CXL Get Supported Features and the NVMe effects log).
#[map]
pub static EFFECTS: HashMap<EffectsKey, u32> = HashMap::with_max_entries(16384, 0);

/// fwctl RPC kernel-copy checks, `rpc_check::counter_index(driver, outcome)` (per CPU).
#[map]
pub static RPC_CHECKS: PerCpuArray<u64> = PerCpuArray::with_max_entries(fwctl_common::rpc_check::COUNTERS, 0);

/// Failure counters, indexed by `stat::*`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Audit events. The agent may resize it (`EbpfLoader::map_max_entries`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Which build is loaded and which process is the agent (one entry, written by the agent).
#[map]
pub static META: Array<AgentMeta> = Array::with_max_entries(1, 0);

/// Rule id -> name. Only the agent uses it: the names must outlive the agent like the
/// counters keyed by these ids do.
#[map]
pub static RULE_NAMES: HashMap<u16, RuleName> = HashMap::with_max_entries(4096, 0);

/// Set by the agent at load time (`EbpfLoader::set_global`).
#[no_mangle]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_files: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    file_inode: 0,
    inode_rdev: 0,
    inode_mode: 0,
    sys_enter_fd: 0,
    sys_enter_cmd: 0,
    sys_enter_arg: 0,
    sys_exit_ret: 0,
    pt_regs_si: 0,
    pt_regs_cx: 0,
    pt_regs_di: 0,
    pt_regs_bx: 0,
    pt_regs_dx: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    nvme_setup_ctrl_id: 0,
    nvme_setup_qid: 0,
    nvme_setup_opcode: 0,
    nvme_setup_cid: 0,
    nvme_complete_ctrl_id: 0,
    nvme_complete_qid: 0,
    nvme_complete_cid: 0,
    nvme_complete_status: 0,
    uring_cmd_file: 0,
    uring_cmd_op: 0,
    uring_cmd_payload: 0,
    uring_payload_skip: 0,
    uring_complete_req: 0,
    uring_complete_res: 0,
    uring_resolved: 0,
};

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: a plain read of a global; volatile so the loader-patched value is used.
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
}

/// Add one to a per-CPU failure counter.
#[inline(always)]
pub fn count_stat(index: u32) {
    if let Some(ptr) = STATS.get_ptr_mut(index) {
        // SAFETY: map value pointer, valid for the program's run; atomic because
        // syscall tracepoint programs can be preempted on PREEMPT kernels.
        unsafe { atomic_add(ptr, 1) };
    }
}

/// Add one to slot `index` of a per-CPU array of counters.
#[inline(always)]
pub fn count_in(map: &PerCpuArray<u64>, index: u32) {
    if let Some(ptr) = map.get_ptr_mut(index) {
        // SAFETY: map value pointer, valid for the program's run; atomic because a task
        // can be preempted inside the program by another one on the same CPU.
        unsafe { atomic_add(ptr, 1) };
    }
}

/// Add one to `key`'s per-CPU counter, creating it on first use; a full map is counted.
#[inline(always)]
pub fn increment<K>(map: &PerCpuHashMap<K, u64>, key: &K) {
    add(map, key, 1)
}

/// Subtract one (a wrapping add: the agent sums per-CPU slots with wrapping arithmetic,
/// so a decrement on another CPU than the increment still nets out).
#[inline(always)]
pub fn decrement<K>(map: &PerCpuHashMap<K, u64>, key: &K) {
    add(map, key, u64::MAX)
}

#[inline(always)]
fn add<K>(map: &PerCpuHashMap<K, u64>, key: &K, delta: u64) {
    let mut slot = map.get_ptr_mut(key);
    if slot.is_none() {
        // BPF_NOEXIST: if another task created the slot in between, keep its value.
        let _ = map.insert(key, &0, 1);
        slot = map.get_ptr_mut(key);
    }
    match slot {
        // SAFETY: per-CPU map value pointer, valid during this run; atomic because this
        // task can be preempted by another one on the same CPU updating the same slot.
        Some(slot) => unsafe { atomic_add(slot, delta) },
        None => count_stat(stat::COUNTER_MAP_FULL),
    }
}

/// Atomically add to a map value (BPF_ATOMIC | BPF_ADD).
///
/// # Safety
/// `ptr` must be a valid map value pointer.
#[inline(always)]
pub unsafe fn atomic_add(ptr: *mut u64, value: u64) {
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(ptr, value);
    }
}
