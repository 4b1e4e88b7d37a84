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

/// The stand-in as an NVMe controller and its errno-returning admin command, the way the
/// policy and fleet tests use it (a tty: ENOTTY when a command reaches it, EPERM when
/// the hook refused it).
impl StandIn {
    /// The agent's `devices:` entry declaring this node an NVMe controller.
    pub fn declared_nvme(&self) -> [crate::agent::Declared<'static>; 1] {
        [crate::agent::Declared { major_minor: self.major_minor(), class: "nvme", driver: "nvme" }]
    }

    /// Issue an NVMe admin command; the errno it failed with.
    pub fn nvme_admin(&self, opcode: u8) -> i32 {
        let p = crate::ioctls::nvme_passthru(opcode, 0, 0, false);
        assert_eq!(
            crate::ioctls::ioctl(self.fd(), crate::ioctls::NVME_IOCTL_ADMIN_CMD, p.as_ptr() as u64),
            -1
        );
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}
