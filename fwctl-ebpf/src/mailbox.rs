//! The NVMe driver's own command tracepoints (`nvme:nvme_setup_cmd`, `nvme:nvme_complete_rq`):
//! every admin-queue command the controller receives, whoever sent it. The first command a
//! thread submits after its passthrough command was let through is that command
//! (`passthrough`, checked against the decided opcode: a difference is a TOCTOU race);
//! anything else is `kernel`. Counting happens at completion, with the device's status.
//! Not for: the comparison itself (`fwctl_common::submission`) or the reaction to a
//! change (`toctou`).

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use fwctl_common::{
    model::{class, nvme_command_key, origin, MailboxKey, MailboxPending},
    submission::{self, queue_class, Submission},
};

use crate::{
    maps::{increment, offsets, DECIDED, MAILBOX_COUNTERS, MAILBOX_PENDING},
    toctou,
};

#[tracepoint(category = "nvme", name = "nvme_setup_cmd")]
pub fn fwctl_nvme_setup_cmd(ctx: TracePointContext) -> u32 {
    let _ = try_setup(&ctx);
    0
}

#[tracepoint(category = "nvme", name = "nvme_complete_rq")]
pub fn fwctl_nvme_complete_rq(ctx: TracePointContext) -> u32 {
    let _ = try_complete(&ctx);
    0
}

fn try_setup(ctx: &TracePointContext) -> Result<(), i64> {
    let off = offsets();
    // SAFETY: offsets come from this kernel's tracefs format files.
    let qid: i32 = unsafe { ctx.read_at(off.nvme_setup_qid as usize) }?;
    let opcode: u8 = unsafe { ctx.read_at(off.nvme_setup_opcode as usize) }?;
    let passthrough = check_submission(queue_class(qid), opcode);
    if qid != 0 {
        return Ok(());
    }
    let ctrl_id: i32 = unsafe { ctx.read_at(off.nvme_setup_ctrl_id as usize) }?;
    let cid: u16 = unsafe { ctx.read_at(off.nvme_setup_cid as usize) }?;
    let pending = MailboxPending {
        opcode,
        origin: if passthrough { origin::PASSTHROUGH } else { origin::KERNEL },
        _pad: [0; 6],
    };
    MAILBOX_PENDING.insert(&nvme_command_key(ctrl_id as u32, 0, cid), &pending, 0).map_err(|e| e as i64)
}

/// The first submission of a thread with a passthrough command of `class` decided is
/// that command (the kernel copied it from user memory in between): the same opcode, or
/// the payload changed after the decision (`fwctl_common::submission::check`). True when
/// it is the passthrough command.
#[inline(always)]
fn check_submission(class: u8, opcode: u8) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: plain data copied out.
    let Some(decided) = (unsafe { DECIDED.get(&pid_tgid) }).copied() else {
        return false;
    };
    let submitted = submission::check(&decided, class, opcode);
    if submitted == Submission::Kernel {
        return false;
    }
    let _ = DECIDED.remove(&pid_tgid);
    if submitted == Submission::Changed {
        toctou::detected(decided.key, class, opcode as u32);
    }
    true
}

fn try_complete(ctx: &TracePointContext) -> Result<(), i64> {
    let off = offsets();
    // SAFETY: as above.
    let qid: i32 = unsafe { ctx.read_at(off.nvme_complete_qid as usize) }?;
    if qid != 0 {
        return Ok(());
    }
    let ctrl_id: i32 = unsafe { ctx.read_at(off.nvme_complete_ctrl_id as usize) }?;
    let cid: u16 = unsafe { ctx.read_at(off.nvme_complete_cid as usize) }?;
    let status: u16 = unsafe { ctx.read_at(off.nvme_complete_status as usize) }?;
    let key = nvme_command_key(ctrl_id as u32, 0, cid);
    // SAFETY: value copied out before the slot is removed.
    let Some(pending) = (unsafe { MAILBOX_PENDING.get(&key) }).copied() else {
        return Ok(()); // submitted before the agent attached
    };
    let _ = MAILBOX_PENDING.remove(&key);
    let counter = MailboxKey {
        status,
        opcode: pending.opcode,
        class: class::NVME_ADMIN,
        origin: pending.origin,
        _pad: [0; 3],
    };
    increment(&MAILBOX_COUNTERS, &counter);
    Ok(())
}
