//! fwctl-guard's kernel side: hooks that see passthrough ioctls and io_uring commands,
//! decode them with the shared `fwctl_common::decode` functions, apply the policy, count
//! them exactly and send audit events.
//!
//! Flow: hook entry point (thin: `lsm`, `syscall_tp`) -> `inflight::begin` (`device`
//! lookup, `command::decode`, `policy`, counted as seen, parked) -> result hook (`lsm`
//! fexit, `syscall_tp` exit, `uring`) -> `inflight::finish` (`account`: count moved to
//! ok/error, event sent). Beside it, `mailbox` and `rpc_check` compare what reached the
//! driver with what was decided (`toctou`). The decode and accounting code is
//! hook-agnostic, so every hook set shares it.
//!
//! What the kernel decides is written as pure functions in `fwctl_common` and tested on
//! the host; this crate holds what only the kernel can do (helpers, maps) and the shapes
//! the verifiers need. Not for: anything the agent could do in userspace.
#![no_std]
#![no_main]
// The bpf target has no `AtomicU64::fetch_add`; the intrinsic lowers to BPF_ATOMIC add.
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map APIs take `impl Borrow<T>`: passing references keeps large values (the 136-byte
// Event) from being copied again on the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod account;
mod canary;
mod capability;
mod command;
mod device;
mod hook;
mod inflight;
mod lsm;
mod mailbox;
mod maps;
mod policy;
mod rpc_check;
mod syscall_tp;
mod toctou;
mod trampoline;
mod uring;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
