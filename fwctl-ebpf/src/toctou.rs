//! A payload that changed between the hook's decision and the driver (time-of-check to
//! time-of-use): counted per class, marked in the command's own audit event (which is
//! sent when the command completes), and, under `on_toctou: kill`, answered with SIGKILL
//! to the task. Callers: the NVMe submit tracepoint and the fwctl `fw_rpc` kprobes.

use aya_ebpf::{helpers::generated::bpf_send_signal, EbpfContext};
use aya_log_ebpf::warn;
use fwctl_common::{model::event_flag, policy::on_toctou};

use crate::{
    maps::{atomic_add, INFLIGHT, TOCTOU},
    policy,
};

const SIGKILL: u32 = 9;

/// The command parked under `key` reached the driver as `kernel_opcode` instead.
#[inline(always)]
pub fn detected<C: EbpfContext>(ctx: &C, key: u64, class: u8, kernel_opcode: u32) {
    if let Some(slot) = TOCTOU.get_ptr_mut(class as u32) {
        // SAFETY: per-CPU array value pointer, valid during this run.
        unsafe { atomic_add(slot, 1) };
    }
    let kill = policy::header().on_toctou == on_toctou::KILL;
    let mut decided = 0;
    if let Some(event) = INFLIGHT.get_ptr_mut(&key) {
        // SAFETY: INFLIGHT value pointer, valid for this run.
        let event = unsafe { &mut *event };
        event.flags |= event_flag::TOCTOU | if kill { event_flag::KILLED } else { 0 };
        event.kernel_opcode = kernel_opcode;
        decided = event.command.opcode;
    }
    warn!(
        ctx,
        "fwctl-guard: TOCTOU: class {} opcode {:x} was decided, {:x} reached the driver{}",
        class,
        decided,
        kernel_opcode,
        if kill { "; killing the task" } else { "" }
    );
    if kill {
        // SAFETY: signals the current task; valid in tracing programs.
        unsafe { bpf_send_signal(SIGKILL) };
    }
}
