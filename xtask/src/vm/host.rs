//! Host prerequisites of the VM test bed, installed idempotently in one apt transaction:
//! QEMU from bookworm-backports (each package pinned to that suite, as
//! docs/reference environment.md prescribes: bookworm's QEMU 7.2 conflicts with the
//! image's qemu-utils 10.0 and lacks `volatile-memdev`), busybox-static, cpio, kmod
//! (depmod) and the guest clients nvme-cli and ndctl (`cxl`), whose binaries and
//! libraries are copied into the initramfs. For the fwctl test kernel (only when it
//! has to be built), the kernel build's own tools: compiler, make, bison/flex, libelf and
//! OpenSSL headers, pahole (dwarves, for BTF; bookworm's 1.24 is enough), patch.
//!
//! apt's plan is simulated first (`apt-get -s`) and refused if it would upgrade, downgrade
//! or remove anything already on the host.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::apt;
use crate::{cmd, privilege};

/// Packages taken from bookworm-backports (`pkg/bookworm-backports`).
const BACKPORTS: &[&str] = &["qemu-system-x86", "qemu-system-common", "qemu-system-data", "seabios"];
/// Packages taken from the host's own release.
const PLAIN: &[&str] = &["busybox-static", "cpio", "kmod", "nvme-cli", "ndctl"];
/// What building the fwctl test kernel needs, from the host's own release.
const KERNEL_BUILD: &[&str] = &[
    "build-essential",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "dwarves",
    "kmod",
    "cpio",
    "xz-utils",
    "patch",
    "perl",
    "python3",
];

/// Installs whatever of the test bed's packages is missing; prints nothing when all is present.
pub fn ensure() -> Result<()> {
    install(BACKPORTS, PLAIN)
}

/// Installs whatever the fwctl kernel build needs and is missing.
pub fn ensure_kernel_build() -> Result<()> {
    install(&[], KERNEL_BUILD)
}

/// Installs the missing ones of `backports` (from bookworm-backports) and `plain`.
fn install(backports: &[&str], plain: &[&str]) -> Result<()> {
    let missing_bpo: Vec<&str> = backports.iter().copied().filter(|p| !installed(p)).collect();
    let missing: Vec<&str> = plain.iter().copied().filter(|p| !installed(p)).collect();
    if missing_bpo.is_empty() && missing.is_empty() {
        return Ok(());
    }
    if !missing_bpo.is_empty() && !apt::ensure_suite("bookworm-backports")? {
        // Known suite, but its index may be stale: the versions apt would pick must exist.
        apt::update_suite("bookworm-backports")?;
    }
    let mut specs: Vec<String> = missing_bpo.iter().map(|p| format!("{p}/bookworm-backports")).collect();
    specs.extend(missing.iter().map(|p| p.to_string()));
    println!("vm: installing host packages: {}", specs.join(" "));
    let apt_install = |simulate: bool| -> Result<Command> {
        let mut c = privilege::as_root("env")?;
        c.args(["DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "DPkg::Lock::Timeout=300"]);
        c.args(["install", "-y", "--no-install-recommends", "-t", "bookworm"]);
        if simulate {
            c.arg("-s");
        }
        c.args(&specs);
        Ok(c)
    };
    let plan = apt_install(true)?.output().context("cannot run apt-get -s install")?;
    let text = String::from_utf8_lossy(&plan.stdout);
    if !plan.status.success() {
        bail!("apt cannot plan the install:\n{text}{}", String::from_utf8_lossy(&plan.stderr));
    }
    check_plan(&text)?;
    cmd::run(&mut apt_install(false)?).context("cannot install the VM test bed's host packages")
}

/// Refuses a plan that touches installed packages: `Inst pkg [old] (new ...)` is an
/// upgrade or downgrade, `Remv` a removal.
fn check_plan(plan: &str) -> Result<()> {
    let touched: Vec<&str> = plan
        .lines()
        .filter(|l| {
            let mut words = l.split_whitespace();
            match words.next() {
                Some("Remv") => true,
                Some("Inst") => words.nth(1).is_some_and(|w| w.starts_with('[')),
                _ => false,
            }
        })
        .collect();
    if !touched.is_empty() {
        bail!(
            "refusing to install: apt would change packages already on the host:\n  {}",
            touched.join("\n  ")
        );
    }
    let new = plan.lines().filter(|l| l.starts_with("Inst ")).count();
    println!("vm: apt plan: {new} new packages, nothing upgraded or removed");
    Ok(())
}

/// dpkg lists `package` as installed.
fn installed(package: &str) -> bool {
    cmd::probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.ends_with(" installed"))
}
