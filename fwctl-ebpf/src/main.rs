//! fwctl-guard's kernel side: hooks that see passthrough ioctls, decode them with the
//! shared `fwctl_common::decode` functions, count them exactly and send audit events.
//!
//! Flow: hook entry point (thin) -> `command::decode` -> `inflight` (until the return
//! value is known) -> `account::complete` (counter + event). The decode and accounting
//! code is hook-agnostic so the LSM path reuses it unchanged.
#![no_std]
#![no_main]
// The bpf target has no `AtomicU64::fetch_add`; the intrinsic lowers to BPF_ATOMIC add.
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map APIs take `impl Borrow<T>`: passing references keeps large values (the 120-byte
// Event) from being copied again on the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod account;
mod command;
mod device;
mod inflight;
mod lsm;
mod mailbox;
mod maps;
mod policy;
mod probe;
mod rpc_check;
mod syscall_tp;
mod toctou;
mod uring;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
