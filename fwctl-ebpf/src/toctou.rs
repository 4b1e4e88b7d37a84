//! A payload that changed between the hook's decision and the driver (time-of-check to
//! time-of-use): counted per class, marked in the command's own audit event (which is
//! sent when the command completes, and which the agent also logs), and, under
//! `on_toctou: kill`, answered with SIGKILL to the task. Callers: the NVMe submit
//! tracepoint and the fwctl `fw_rpc` kprobes. No aya-log here: its outlined formatting
//! function takes stack pointers, which 6.1's verifier refuses for a global function
//! ("reg type unsupported for arg#0"). Not for: deciding that a payload changed
//! (`fwctl_common::submission`, `fwctl_common::rpc_check`).

use aya_ebpf::helpers::generated::bpf_send_signal;
use fwctl_common::{model::event_flag, policy::on_toctou};

use crate::{
    maps::{count_in, INFLIGHT, TOCTOU},
    policy,
};

const SIGKILL: u32 = 9;

/// The command parked under `key` reached the driver as `kernel_opcode` instead.
#[inline(always)]
pub fn detected(key: u64, class: u8, kernel_opcode: u32) {
    count_in(&TOCTOU, class as u32);
    let killed = answer();
    if let Some(event) = INFLIGHT.get_ptr_mut(&key) {
        // SAFETY: INFLIGHT value pointer, valid for this run.
        let event = unsafe { &mut *event };
        event.flags |= event_flag::TOCTOU | killed;
        event.kernel_opcode = kernel_opcode;
    }
}

/// Answer a command that reached the driver against the decision (a TOCTOU race, or a
/// denied command every deny program missed) as the policy's `on_toctou` says: under
/// `kill`, SIGKILL to the current task. Returns the event flag to record
/// ([`event_flag::KILLED`] or nothing).
#[inline(always)]
pub fn answer() -> u32 {
    if policy::header().on_toctou != on_toctou::KILL {
        return 0;
    }
    // SAFETY: signals the current task; valid in tracing programs.
    unsafe { bpf_send_signal(SIGKILL) };
    event_flag::KILLED
}
