//! Types, constants and decoders shared by fwctl-guard's eBPF programs and its agent.
//!
//! Everything here is `no_std` and allocation-free so the very code the kernel runs
//! (`decode`, `abi::ioctl_spec`, `policy::decide`, the device-map keys in
//! `device_number`, and the decisions in `parked`, `submission`, `lsm` and `rpc_check`)
//! is unit-tested on the host.
//! What this crate is not for: anything that needs the kernel (map access, helpers) or
//! userspace I/O. The `user` feature only adds `aya::Pod` impls for the map/event types.
#![no_std]

pub mod abi;
pub mod canary;
pub mod catalog;
pub mod decode;
pub mod device_number;
pub mod effects;
pub mod hook_set;
pub mod lsm;
pub mod model;
pub mod object;
pub mod parked;
pub mod policy;
pub mod rpc_check;
pub mod submission;
mod vocab;

#[cfg(feature = "user")]
mod pod {
    use crate::model::{CounterKey, DeviceInfo, Event, KernelOffsets, MailboxKey};
    // SAFETY: all are #[repr(C)] structs of integers with explicit padding fields,
    // so every bit pattern is a valid value.
    unsafe impl aya::Pod for CounterKey {}
    unsafe impl aya::Pod for DeviceInfo {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for MailboxKey {}
    unsafe impl aya::Pod for crate::model::Decided {}
    unsafe impl aya::Pod for crate::model::AgentMeta {}
    unsafe impl aya::Pod for crate::policy::PolicyHeader {}
    unsafe impl aya::Pod for crate::policy::CompiledRule {}
    unsafe impl aya::Pod for crate::policy::IndexKey {}
    unsafe impl aya::Pod for crate::effects::EffectsKey {}
}
