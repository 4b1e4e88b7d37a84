//! The self-test canaries (`fwctl_common::canary`): the agent's proof that each attached
//! program runs. A program that sees one of the agent's canaries adds one to its slot of
//! the `CANARY` map and, when the canary is addressed to it, refuses it. A deciding
//! program parks a marker so that the result program sees the canary return too. A canary
//! is never counted as a command and never becomes an audit event. Callers look at
//! canaries only from the agent (`inflight::is_agent`): from any other process a canary
//! is an ordinary unwatched ioctl.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use core::ffi::c_void;
use fwctl_common::{
    canary,
    model::{device_kind, event_flag, verdict, Event},
};

use crate::{
    device::{watched, Node},
    maps::{count_in, CANARY, INFLIGHT},
};

/// A canary ioctl on `node`, seen by the program in `slot`: the verdict. `park`: the key
/// under which a deciding program leaves a marker for the result program. Inlined: a
/// `Result`/`Option` argument of a BPF subprogram gets BTF the kernel refuses.
#[inline(always)]
pub fn ioctl(slot: u32, node: Result<Option<Node>, i64>, arg: u64, park: u64, parks: bool) -> u8 {
    let Ok(Some(node)) = node else { return verdict::ALLOW };
    if !watched(node).is_some_and(|d| d.kind == canary::DEVICE_KIND) {
        return verdict::ALLOW;
    }
    seen(slot, canary::refuses(arg, slot), park, parks)
}

/// An io_uring command of the agent's on an NVMe node, seen by the program in `slot`
/// (`payload`: the command in kernel memory): the verdict if it is a canary.
#[inline(always)]
pub fn uring(slot: u32, node: Result<Option<Node>, i64>, payload: u64, park: u64, parks: bool) -> u8 {
    let Ok(Some(node)) = node else { return verdict::ALLOW };
    if !watched(node).is_some_and(|d| d.kind == device_kind::NVME) {
        return verdict::ALLOW;
    }
    let mut head = 0u64;
    // SAFETY: reads 8 bytes of the command (opcode at 0, namespace id at 4) into a local.
    let copied =
        unsafe { bpf_probe_read_kernel(&mut head as *mut u64 as *mut c_void, 8, payload as *const c_void) };
    if copied != 0 || (head & 0xff) as u32 != canary::URING_OPCODE {
        return verdict::ALLOW;
    }
    let Some(addressed) = canary::uring_slot((head >> 32) as u32) else { return verdict::ALLOW };
    seen(slot, addressed == slot, park, parks)
}

/// Count the canary in `slot`, leave the marker, and refuse it if `refuse`. A frame of
/// its own: the marker event is large.
#[inline(never)]
fn seen(slot: u32, refuse: bool, park: u64, parks: bool) -> u8 {
    count_in(&CANARY, slot);
    if parks {
        let marker = Event { flags: event_flag::CANARY, ..Event::default() };
        let _ = INFLIGHT.insert(&park, &marker, 0);
    }
    if refuse {
        return verdict::DENY;
    }
    verdict::ALLOW
}

/// A canary marker reached its result program (`slot`): count it there.
#[inline(always)]
pub fn returned(slot: u32) {
    count_in(&CANARY, slot);
}
