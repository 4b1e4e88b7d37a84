//! Why a device's effects could not be read: a short reason for the metric label and the
//! full error (naming the node, the command and the errno text) for the log.

use std::{fmt, io};

/// A failed read of one device's effects.
#[derive(Debug)]
pub struct ReadError {
    /// `fwctl_guard_effects_read_failures_total{reason}`: the errno name in lower case
    /// (`eacces`, `enotty`...), `device_status`, `malformed`, `no_cel`, `map_full`.
    pub reason: String,
    pub error: anyhow::Error,
}

impl ReadError {
    /// A failed system call; `what` names the node and the command.
    pub fn os(error: io::Error, what: impl fmt::Display) -> Self {
        Self { reason: errno_reason(&error), error: anyhow::Error::new(error).context(what.to_string()) }
    }

    /// The device (or its mailbox) answered with a failure status.
    pub fn device_status(what: impl fmt::Display, status: impl fmt::Display) -> Self {
        Self {
            reason: "device_status".into(),
            error: anyhow::anyhow!("{what}: the device returned status {status}"),
        }
    }

    /// The reply did not have the layout the specification gives it.
    pub fn malformed(what: impl fmt::Display, why: impl fmt::Display) -> Self {
        Self { reason: "malformed".into(), error: anyhow::anyhow!("{what}: {why}") }
    }

    pub fn other(reason: &str, error: anyhow::Error) -> Self {
        Self { reason: reason.into(), error }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// The errno of `error` by name, lower case; `errno_N` for the rare ones, `io` without one.
pub fn errno_reason(error: &io::Error) -> String {
    let Some(errno) = error.raw_os_error() else { return "io".into() };
    let name = match errno {
        libc::EPERM => "eperm",
        libc::ENOENT => "enoent",
        libc::EINTR => "eintr",
        libc::EIO => "eio",
        libc::ENXIO => "enxio",
        libc::E2BIG => "e2big",
        libc::EAGAIN => "eagain",
        libc::ENOMEM => "enomem",
        libc::EACCES => "eacces",
        libc::EFAULT => "efault",
        libc::EBUSY => "ebusy",
        libc::ENODEV => "enodev",
        libc::EINVAL => "einval",
        libc::ENOTTY => "enotty",
        libc::ENOSPC => "enospc",
        libc::EMSGSIZE => "emsgsize",
        libc::EOPNOTSUPP => "eopnotsupp",
        libc::ETIMEDOUT => "etimedout",
        _ => return format!("errno_{errno}"),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_errno_and_keep_the_text() {
        let e = ReadError::os(io::Error::from_raw_os_error(libc::EACCES), "/dev/nvme0: Get Log Page 0x05");
        assert_eq!(e.reason, "eacces");
        let text = e.to_string();
        assert!(text.starts_with("/dev/nvme0: Get Log Page 0x05: Permission denied"), "{text}");
        assert_eq!(errno_reason(&io::Error::from_raw_os_error(libc::ENOTTY)), "enotty");
        assert_eq!(errno_reason(&io::Error::from_raw_os_error(libc::EDOM)), format!("errno_{}", libc::EDOM));
        assert_eq!(errno_reason(&io::Error::other("x")), "io");
        let status = ReadError::device_status("/dev/cxl/mem0: Get Log", "0x0015");
        assert_eq!(status.reason, "device_status");
        assert!(status.to_string().contains("0x0015"));
    }
}
