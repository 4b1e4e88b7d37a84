//! The audit trail: every kernel event becomes an audit record ([`record`]) written to
//! the JSON-lines log ([`file`]) and, when configured, to syslog ([`syslog`]) by one task
//! that drains the kernel's ring buffer ([`pipeline`]); per-process counts come from the
//! same stream ([`per_process`]). Every record not written is counted ([`metrics`]).

pub mod file;
pub mod metrics;
pub mod per_process;
pub mod pipeline;
pub mod record;
pub mod syslog;

pub use file::AuditLog;
pub use record::{monotonic_epoch, AuditRecord};
