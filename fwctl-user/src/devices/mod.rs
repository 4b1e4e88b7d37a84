//! The passthrough devices of this host: which device nodes carry passthrough commands
//! ([`inventory`]: the kernel's registries, sysfs and the configuration), which driver
//! serves a fwctl node ([`fwctl_info`]), what each device declares about its own commands
//! ([`effects`]).
//!
//! Not for: putting any of it into the kernel's maps (`kernel` does, through the map
//! traits defined here) or naming commands (`names`).

pub mod effects;
pub mod fwctl_info;
pub mod inventory;
