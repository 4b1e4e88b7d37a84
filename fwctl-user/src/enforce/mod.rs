//! From a validated policy to the kernel: compile it into fixed-size tables
//! ([`compile`]), install them into the inactive slot and flip ([`install`]), and keep
//! rule ids stable for metric labels across reloads ([`rule_ids`]).

pub mod compile;
pub mod explain;
pub mod install;
pub mod rule_ids;
pub mod runtime;
