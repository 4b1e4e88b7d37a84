//! The result of an io_uring passthrough command: `io_uring:io_uring_complete` reports
//! each completed request with its result. A command `lsm/uring_cmd` parked under the
//! request's address (its `io_uring_cmd` is the request's first member) is completed
//! here; every other completion costs one failed hash lookup.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use fwctl_common::canary::slot;

use crate::{inflight, maps::offsets};

#[tracepoint(category = "io_uring", name = "io_uring_complete")]
pub fn fwctl_io_uring_complete(ctx: TracePointContext) -> u32 {
    let _ = try_complete(&ctx);
    0
}

fn try_complete(ctx: &TracePointContext) -> Result<(), i64> {
    let off = offsets();
    // SAFETY: offsets from this kernel's tracefs format file.
    let req = unsafe { ctx.read_at::<u64>(off.uring_complete_req as usize) }?;
    let res = unsafe { ctx.read_at::<i32>(off.uring_complete_res as usize) }?;
    inflight::finish_key(req, res as i64, None, slot::IO_URING_COMPLETE);
    Ok(())
}
