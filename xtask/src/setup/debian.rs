//! Debian packages: check each with `dpkg-query`, install only the missing ones.

use std::process::Command;

use anyhow::{Context, Result};

use super::Status;
use crate::{cmd, privilege};

/// Installs whichever of `packages` dpkg does not list as installed: `apt-get update`
/// once, then one `apt-get install` for all of them (as root, through sudo if needed).
pub fn ensure_debian_packages(packages: &[&str]) -> Result<Status> {
    let what = format!("packages: {}", packages.join(" "));
    if privilege::which("dpkg-query").is_none() {
        println!("setup: no dpkg-query (not Debian?): make sure these are installed: {}", packages.join(" "));
        return Ok(Status::present(what));
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(Status::present(what));
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    cmd::run(privilege::as_root("apt-get")?.arg("update")).context("apt-get update failed")?;
    cmd::run(
        privilege::as_root("env")?
            .arg("DEBIAN_FRONTEND=noninteractive")
            .args(["apt-get", "install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
    .with_context(|| format!("cannot install Debian packages {missing:?}"))?;
    Ok(Status::acted(what))
}

/// `dpkg-query -W -f='${Status}' <pkg>` says "install ok installed".
fn installed(package: &str) -> bool {
    cmd::probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.split_whitespace().last() == Some("installed"))
}
