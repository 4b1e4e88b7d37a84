//! The pseudo-filesystems the agent and the privileged tests need (the host kernel
//! does not mount them at boot): tracefs, bpffs and securityfs.

use std::process::Command;

use anyhow::{Context, Result};

use super::Status;
use crate::{cmd, privilege};

/// (filesystem type, mount point).
const MOUNTS: &[(&str, &str)] =
    &[("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf"), ("securityfs", "/sys/kernel/security")];

/// Mounts each filesystem that `/proc/self/mounts` does not list (root only).
pub fn ensure() -> Result<Status> {
    if !privilege::is_root() {
        println!("setup: not root, mounts not checked: privileged integration tests will skip");
        return Ok(Status::present("mounts skipped (not root)"));
    }
    let table = std::fs::read_to_string("/proc/self/mounts").context("cannot read /proc/self/mounts")?;
    let mut acted = false;
    for &(fs, dir) in MOUNTS {
        let mounted = table.lines().any(|l| {
            let mut f = l.split_whitespace().skip(1);
            f.next() == Some(dir) && f.next() == Some(fs)
        });
        if mounted {
            continue;
        }
        println!("setup: mounting {fs} at {dir}");
        let _ = std::fs::create_dir_all(dir);
        cmd::run(Command::new("mount").args(["-t", fs, fs, dir]))
            .with_context(|| format!("cannot mount {fs} at {dir}"))?;
        acted = true;
    }
    let what = "tracefs, bpffs, securityfs mounted";
    Ok(if acted { Status::acted(what) } else { Status::present(what) })
}
