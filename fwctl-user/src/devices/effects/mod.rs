//! What each passthrough device declares about its own commands — the NVMe Commands
//! Supported and Effects log, the CXL Command Effects Log, the Set Feature Effects of CXL
//! features — read from the devices, kept in the kernel's `EFFECTS` map for the policy,
//! and shown by `fwctl-guard devices --effects`.
//!
//! The readers (`nvme`, `cxl_mem`, `fwctl_cxl`) are thin ioctl wrappers around pure
//! request builders and pagination; `table` turns the parsed logs
//! (`fwctl_common::effects`) into per-class tables; `read` decides which node is read and
//! which shares another's tables; `install` writes them to the map (through the
//! [`install::EffectsMap`] trait, which `kernel` implements for the real map); `refresh`
//! keeps the map current as devices come and go; `metrics` counts what was read.

pub mod cxl_mem;
pub mod failure;
pub mod fwctl_cxl;
pub mod install;
pub mod ioctl;
pub mod metrics;
pub mod nvme;
pub mod read;
pub mod refresh;
pub mod report;
pub mod source;
pub mod table;
