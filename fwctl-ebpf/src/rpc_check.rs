//! Kprobes on the fwctl drivers' `fw_rpc` functions: decode the kernel's own copy of the
//! RPC payload and compare it with the decision parked for this task by the ioctl hook
//! (`fwctl_common::rpc_check`). Kprobes rather than fentry: aya attaches fentry only to
//! vmlinux functions, and these live in modules (cxl_core, mlx5_fwctl, pds_fwctl, bnxt_fwctl).
//! Not for: the comparison, which is `fwctl_common::rpc_check::compare`.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::kprobe, programs::ProbeContext};
use fwctl_common::{
    decode::{fwctl::decode_payload, PAYLOAD_HEAD},
    model::{class, driver, ioctl, Command},
    rpc_check::{compare, counter_index, outcome},
};

use crate::{
    command::read_into,
    inflight::is_agent,
    maps::{atomic_add, offsets, INFLIGHT, RPC_CHECKS},
    toctou,
};

#[kprobe]
pub fn fwctl_rpc_check_cxl(ctx: ProbeContext) -> u32 {
    let _ = try_check(&ctx, driver::CXL);
    0
}

#[kprobe]
pub fn fwctl_rpc_check_mlx5(ctx: ProbeContext) -> u32 {
    let _ = try_check(&ctx, driver::MLX5);
    0
}

#[kprobe]
pub fn fwctl_rpc_check_pds(ctx: ProbeContext) -> u32 {
    let _ = try_check(&ctx, driver::PDS);
    0
}

#[kprobe]
pub fn fwctl_rpc_check_bnxt(ctx: ProbeContext) -> u32 {
    let _ = try_check(&ctx, driver::BNXT);
    0
}

/// `fw_rpc(uctx, scope, in, in_len, out_len)`: decode `in` (kernel memory) and compare.
fn try_check(ctx: &ProbeContext, drv: u8) -> Result<(), i64> {
    if is_agent(&offsets()) {
        return Ok(());
    }
    let scope: u64 = ctx.arg(1).ok_or(-1i64)?;
    let payload: u64 = ctx.arg(2).ok_or(-1i64)?;
    let in_len: u64 = ctx.arg(3).ok_or(-1i64)?;
    let mut kernel = Command::new(ioctl::FWCTL_RPC, class::FWCTL, drv);
    if decode_kernel_copy(payload, in_len, &mut kernel) != 0 {
        return Err(-1);
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let result = match INFLIGHT.get_ptr(&pid_tgid) {
        // SAFETY: INFLIGHT value pointer, valid for this run; only this thread writes it.
        Some(parked) => {
            let decided = unsafe { &(*parked).command };
            if decided.ioctl == ioctl::FWCTL_RPC {
                compare(decided, &kernel, scope as u32)
            } else {
                outcome::UNDECIDED
            }
        }
        None => outcome::UNDECIDED,
    };
    if result != outcome::MATCH && result != outcome::UNDECIDED {
        toctou::detected(pid_tgid, class::FWCTL, kernel.opcode);
    }
    if let Some(slot) = RPC_CHECKS.get_ptr_mut(counter_index(drv, result)) {
        // SAFETY: per-CPU array value pointer, valid during this run.
        unsafe { atomic_add(slot, 1) };
    }
    Ok(())
}

/// Copy the head of the kernel's payload copy and decode it. Not inlined: its buffer
/// gets its own stack frame. Returns 0, or 1 if the copy could not be read.
#[inline(never)]
fn decode_kernel_copy(payload: u64, in_len: u64, command: &mut Command) -> u32 {
    let mut head = [0u8; PAYLOAD_HEAD];
    let len = if in_len > PAYLOAD_HEAD as u64 { PAYLOAD_HEAD as u32 } else { in_len as u32 };
    if !read_into(&mut head, payload, len, true) {
        return 1;
    }
    decode_payload(&head, command);
    0
}
