//! Stand-in device nodes: pseudo-terminal slaves, each with its own major:minor.

use std::{
    fs::{File, OpenOptions},
    os::fd::{AsRawFd, FromRawFd, RawFd},
    os::unix::fs::MetadataExt,
    path::PathBuf,
};

use anyhow::{bail, Context as _, Result};

/// A pty pair; the slave node is what tests declare and issue ioctls on.
pub struct StandIn {
    _master: File,
    pub slave: File,
    pub path: PathBuf,
    pub major: u32,
    pub minor: u32,
}

impl StandIn {
    pub fn new() -> Result<Self> {
        // SAFETY: plain libc calls on a fresh fd; errors checked.
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            if master < 0 {
                bail!("posix_openpt: {}", std::io::Error::last_os_error());
            }
            let master_file = File::from_raw_fd(master);
            if libc::grantpt(master) != 0 || libc::unlockpt(master) != 0 {
                bail!("grantpt/unlockpt: {}", std::io::Error::last_os_error());
            }
            let mut name = [0 as libc::c_char; 64];
            if libc::ptsname_r(master, name.as_mut_ptr(), name.len()) != 0 {
                bail!("ptsname_r failed");
            }
            let path = PathBuf::from(std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned());
            let slave = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let rdev = slave.metadata()?.rdev();
            Ok(Self { _master: master_file, slave, path, major: libc::major(rdev), minor: libc::minor(rdev) })
        }
    }

    pub fn fd(&self) -> RawFd {
        self.slave.as_raw_fd()
    }

    pub fn major_minor(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

use std::os::unix::fs::OpenOptionsExt;
