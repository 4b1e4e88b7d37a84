//! Harness for fwctl-guard's integration tests (the suites are in `src/tests/`, one file
//! per feature, run by `src/main.rs`) and its benchmark: start the real agent binary,
//! create stand-in device nodes, issue real passthrough ioctls, scrape the real metrics
//! endpoint with curl and read the audit log; decide from `fwctl-guard probe --json`
//! whether this kernel can run a test, and report a test that cannot as ignored, with why.
//!
//! Stand-ins (not a mock of the product): the host has no fwctl/NVMe/CXL/SCSI device,
//! so tests open pseudo-terminal slaves (each has a unique major:minor) and declare them
//! in the agent's configuration as a device of the class under test. The ioctl reaches
//! the kernel, the eBPF hook decodes the real payload layout, and the tty driver answers
//! ENOTTY. Everything the agent does with it is the production path.

pub mod agent;
pub mod ioctls;
pub mod metrics;
pub mod policies;
pub mod probe;
pub mod require;
pub mod standin;
pub mod trial;
pub mod unit;
pub mod uring;
pub mod wait;
pub mod workspace;
