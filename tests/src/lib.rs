//! Harness for fwctl-guard's privileged tests and benchmarks: start the real agent
//! binary, create stand-in device nodes, issue real passthrough ioctls, scrape the real
//! metrics endpoint with curl and read the audit log.
//!
//! Stand-ins (not a mock of the product): the host has no fwctl/NVMe/CXL/SCSI device,
//! so tests open pseudo-terminal slaves (each has a unique major:minor) and declare them
//! in the agent's configuration as a device of the class under test. The ioctl reaches
//! the kernel, the eBPF hook decodes the real payload layout, and the tty driver answers
//! ENOTTY. Everything the agent does with it is the production path.

pub mod agent;
pub mod ioctls;
pub mod metrics;
pub mod privilege;
pub mod standin;
pub mod uring;
