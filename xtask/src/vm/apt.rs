//! apt plumbing for the VM test bed: extra Debian suites (bookworm-backports, trixie,
//! sid) added to apt's sources *pinned at priority 1*, so nothing installed on the host
//! is ever upgraded from them; version look-ups; `apt-get download`.
//!
//! A suite is only added (and only its own index fetched) when `apt-cache policy` does
//! not list it yet. Priority 1 keeps the host's candidates on bookworm (500) and stops
//! later upgrades of packages taken from these suites; `pkg/suite` and `pkg=version`
//! still select from them explicitly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{cmd, privilege};

/// Debian's archive, as the host's own sources spell it.
const MIRROR: &str = "http://deb.debian.org/debian";
/// The keyring bookworm's sources use; it also verifies trixie and sid.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// apt options that wait for a lock held by another apt instead of failing at once.
const LOCK_WAIT: [&str; 2] = ["-o", "DPkg::Lock::Timeout=300"];

/// `/etc/apt/sources.list.d/fwctl-guard-vm-<suite>.sources`.
fn sources_file(suite: &str) -> PathBuf {
    PathBuf::from(format!("/etc/apt/sources.list.d/fwctl-guard-vm-{suite}.sources"))
}

/// `/etc/apt/preferences.d/fwctl-guard-vm-<suite>`.
fn pin_file(suite: &str) -> PathBuf {
    PathBuf::from(format!("/etc/apt/preferences.d/fwctl-guard-vm-{suite}"))
}

/// True when apt has an index for `suite` from any configured source.
pub fn suite_indexed(suite: &str) -> bool {
    cmd::probe(Command::new("apt-cache").arg("policy"))
        .is_some_and(|policy| policy.contains(&format!(",n={suite},")))
}

/// Makes `suite` known to apt (pin first, then the source, then an update of that
/// source only). Returns true when it had to fetch the suite's index.
pub fn ensure_suite(suite: &str) -> Result<bool> {
    if suite_indexed(suite) {
        return Ok(false);
    }
    println!("vm: adding Debian {suite} to apt's sources (pinned at priority 1)");
    let pin = format!(
        "# fwctl-guard VM test bed (cargo xtask vm-test): take nothing from {suite} unless asked.\n\
         Package: *\nPin: release n={suite}\nPin-Priority: 1\n"
    );
    write_root_file(&pin_file(suite), &pin)?;
    let source = format!(
        "# fwctl-guard VM test bed (cargo xtask vm-test): kernels and QEMU, pinned in {}.\n\
         Types: deb\nURIs: {MIRROR}\nSuites: {suite}\nComponents: main\nSigned-By: {KEYRING}\n",
        pin_file(suite).display()
    );
    write_root_file(&sources_file(suite), &source)?;
    update_suite(suite)?;
    Ok(true)
}

/// `apt-get update` for this suite's source file alone (other lists are kept).
pub fn update_suite(suite: &str) -> Result<()> {
    let list = sources_file(suite);
    if !list.exists() {
        // The suite came from the host's own sources: refresh everything.
        return cmd::run(privilege::as_root("apt-get")?.args(LOCK_WAIT).arg("update"));
    }
    cmd::run(privilege::as_root("apt-get")?.args(LOCK_WAIT).args([
        "update",
        "-o",
        &format!("Dir::Etc::SourceList={}", list.display()),
        "-o",
        "Dir::Etc::SourceParts=-",
        "-o",
        "APT::Get::List-Cleanup=0",
    ]))
    .with_context(|| format!("apt-get update for {suite} failed"))
}

/// Writes a root-owned configuration file (through `sudo tee` when not root).
fn write_root_file(path: &Path, contents: &str) -> Result<()> {
    if privilege::is_root() {
        return std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()));
    }
    let mut tee = privilege::as_root("tee")?;
    let mut child = tee.arg(path).stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    child.stdin.take().expect("piped").write_all(contents.as_bytes())?;
    if !child.wait()?.success() {
        bail!("cannot write {}", path.display());
    }
    Ok(())
}

/// A package version found in a suite.
#[derive(Clone, Debug)]
pub struct Found {
    pub package: String,
    pub version: String,
}

/// The newest package in `suite` (with its security and point updates) named `<prefix><middle><suffix>` where `middle` has no
/// `-` (so `-cloud`/`-rt` flavours and `-dbg` packages do not match). `None` when the
/// suite has none.
pub fn newest(suite: &str, prefix: &str, suffix: &str) -> Result<Option<Found>> {
    let names = cmd::probe(Command::new("apt-cache").args(["pkgnames", prefix])).unwrap_or_default();
    let mut best: Option<Found> = None;
    for name in names.lines().map(str::trim) {
        let Some(middle) = name.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(suffix)) else {
            continue;
        };
        if middle.is_empty() || middle.contains('-') {
            continue;
        }
        for version in versions_in(name, suite)? {
            if best.as_ref().is_none_or(|b| version_gt(&version, &b.version)) {
                best = Some(Found { package: name.to_string(), version });
            }
        }
    }
    Ok(best)
}

/// The versions of `package` that `suite` (or its `-security`/`-updates`) offers
/// (`apt-cache madison`).
pub fn versions_in(package: &str, suite: &str) -> Result<Vec<String>> {
    let dists = [format!("{suite}/"), format!("{suite}-security/"), format!("{suite}-updates/")];
    let out = cmd::probe(Command::new("apt-cache").args(["madison", package])).unwrap_or_default();
    // "pkg | 7.2.13-1 | http://deb.debian.org/debian sid/main amd64 Packages"
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('|').map(str::trim);
            let (_, version, origin) = (fields.next()?, fields.next()?, fields.next()?);
            let dist = origin.split_whitespace().nth(1)?;
            dists.iter().any(|d| dist.starts_with(d.as_str())).then(|| version.to_string())
        })
        .collect())
}

/// `dpkg --compare-versions a gt b`.
fn version_gt(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `apt-get download pkg=version` into `dir`.
pub fn download(found: &Found, dir: &Path) -> Result<()> {
    // As root, apt warns that the download is unsandboxed: harmless here.
    cmd::run(
        Command::new("apt-get")
            .current_dir(dir)
            .args(["-q", "download"])
            .arg(format!("{}={}", found.package, found.version)),
    )
    .with_context(|| format!("cannot download {} {}", found.package, found.version))
}
