//! `cargo xtask package`: the Debian package, built with dpkg-deb from a staged tree
//! (no cargo-deb: dpkg-deb and dpkg-shlibdeps are on every Debian machine).
//!
//! Layout (README "Install on a host"):
//!
//! ```text
//! /usr/bin/fwctl-guard
//! /lib/systemd/system/fwctl-guard.service        packaging/fwctl-guard.service
//! /etc/fwctl-guard/config.yaml                    config/fwctl-guard.yaml, policy: → policy.d (conffile)
//! /etc/fwctl-guard/policy.d/00-default.yaml       policies/default.yaml (conffile)
//! /etc/logrotate.d/fwctl-guard                    deploy/logrotate/fwctl-guard (conffile)
//! /usr/share/fwctl-guard/policies/                the shipped policies and schema.json
//! /usr/share/fwctl-guard/{prometheus,grafana}/    alert rules and dashboard (deploy/)
//! /usr/share/doc/fwctl-guard/                     README.md, copyright
//! /var/log/fwctl-guard/                           0750
//! ```

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{build, cmd, paths, setup};

/// The package's name.
pub const NAME: &str = "fwctl-guard";
/// Where the installed configuration points the agent.
pub const POLICY_DIR: &str = "/etc/fwctl-guard/policy.d";

/// Files marked as conffiles (dpkg keeps local edits on upgrade).
const CONFFILES: &[&str] = &[
    "/etc/fwctl-guard/config.yaml",
    "/etc/fwctl-guard/policy.d/00-default.yaml",
    "/etc/logrotate.d/fwctl-guard",
];

/// `cargo xtask package`: setup, release build, stage, dpkg-deb. Prints the .deb's path.
pub fn package() -> Result<()> {
    setup::setup()?;
    let deb = build_package()?;
    println!("built {}", deb.display());
    Ok(())
}

/// `target/debian/fwctl-guard_<version>_<arch>.deb`.
pub fn deb_path() -> Result<PathBuf> {
    Ok(paths::target_dir().join("debian").join(format!("{NAME}_{}_{}.deb", version(), arch()?)))
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn arch() -> Result<String> {
    let out = cmd::probe(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture failed (is this a Debian system?)")?;
    Ok(out.trim().to_string())
}

/// Builds the agent (release), stages the tree and builds the .deb (no setup).
pub fn build_package() -> Result<PathBuf> {
    let root = paths::workspace_root();
    let binary = build::build_agent(true)?;
    let deb = deb_path()?;
    let stage = paths::target_dir().join("debian").join(format!("{NAME}_{}_{}", version(), arch()?));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    let put = |from: &Path, to: &str, mode: u32| copy(from, &stage.join(to), mode);
    put(&binary, "usr/bin/fwctl-guard", 0o755)?;
    put(&root.join("packaging/fwctl-guard.service"), "lib/systemd/system/fwctl-guard.service", 0o644)?;
    write(&stage.join("etc/fwctl-guard/config.yaml"), &installed_config(&root)?, 0o644)?;
    put(&root.join("policies/default.yaml"), "etc/fwctl-guard/policy.d/00-default.yaml", 0o644)?;
    put(&root.join("deploy/logrotate/fwctl-guard"), "etc/logrotate.d/fwctl-guard", 0o644)?;
    for name in ["default.yaml", "fleet-baseline.yaml", "strict.yaml", "schema.json"] {
        put(&root.join("policies").join(name), &format!("usr/share/fwctl-guard/policies/{name}"), 0o644)?;
    }
    for dir in ["prometheus", "grafana"] {
        for entry in fs::read_dir(root.join("deploy").join(dir)).with_context(|| format!("deploy/{dir}"))? {
            let from = entry?.path();
            let name = from.file_name().unwrap_or_default().to_string_lossy().into_owned();
            put(&from, &format!("usr/share/fwctl-guard/{dir}/{name}"), 0o644)?;
        }
    }
    put(&root.join("README.md"), "usr/share/doc/fwctl-guard/README.md", 0o644)?;
    write(&stage.join("usr/share/doc/fwctl-guard/copyright"), COPYRIGHT, 0o644)?;
    mkdir(&stage.join("var/log/fwctl-guard"), 0o750)?;

    let debian = stage.join("DEBIAN");
    mkdir(&debian, 0o755)?;
    for script in ["postinst", "prerm", "postrm"] {
        put(&root.join("packaging/debian").join(script), &format!("DEBIAN/{script}"), 0o755)?;
    }
    write(&debian.join("conffiles"), &(CONFFILES.join("\n") + "\n"), 0o644)?;
    let control = control(&stage, &binary)?;
    write(&debian.join("control"), &control, 0o644)?;

    cmd::run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zxz", "--build"]).arg(&stage).arg(&deb))?;
    Ok(deb)
}

/// config/fwctl-guard.yaml with `policy:` pointing at the installed policy directory.
fn installed_config(root: &Path) -> Result<String> {
    let path = root.join("config/fwctl-guard.yaml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let at: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].starts_with("policy:")).collect();
    let [at] = at[..] else {
        bail!("{}: expected exactly one top-level `policy:` line to point at {POLICY_DIR}", path.display())
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[at] = format!(
        "# Installed layout: every *.yaml in this directory, merged in lexical order (README \
         \"policy.d\").\npolicy: {POLICY_DIR}"
    );
    Ok(out.join("\n") + "\n")
}

/// DEBIAN/control, with Depends from dpkg-shlibdeps and the staged tree's size.
fn control(stage: &Path, binary: &Path) -> Result<String> {
    let depends = shlib_depends(binary)?;
    let kib = cmd::probe(Command::new("du").args(["-sk", "--exclude=DEBIAN"]).arg(stage))
        .and_then(|o| o.split_whitespace().next().map(str::to_string))
        .context("du on the staged tree")?;
    Ok(format!(
        "Package: {NAME}\n\
         Version: {}\n\
         Architecture: {}\n\
         Maintainer: fwctl-guard developers <fwctl-guard@example.invalid>\n\
         Installed-Size: {kib}\n\
         Depends: {depends}\n\
         Recommends: logrotate\n\
         Section: admin\n\
         Priority: optional\n\
         Homepage: https://example.invalid/fwctl-guard\n\
         Description: audit and gate device passthrough commands with eBPF\n \
         fwctl-guard counts, audits and (with BPF LSM) denies device passthrough\n \
         commands - fwctl RPCs, NVMe admin and I/O passthrough, the CXL memdev\n \
         mailbox, SG_IO - in the kernel, decided by a YAML policy. It exports\n \
         Prometheus metrics and a JSON-lines audit log.\n",
        version(),
        arch()?
    ))
}

/// `libc6 (>= ...), ...` for `binary`, from dpkg-shlibdeps (which wants a debian/control
/// beside it, so it runs in a scratch directory).
fn shlib_depends(binary: &Path) -> Result<String> {
    let dir = paths::target_dir().join("debian/shlibdeps");
    write(
        &dir.join("debian/control"),
        "Source: fwctl-guard\n\nPackage: fwctl-guard\nArchitecture: any\n",
        0o644,
    )?;
    let out = Command::new("dpkg-shlibdeps")
        .current_dir(&dir)
        .arg("-O")
        .arg(binary)
        .output()
        .context("running dpkg-shlibdeps (package dpkg-dev)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().find_map(|l| l.strip_prefix("shlibs:Depends=")) {
        Some(deps) if out.status.success() => Ok(deps.trim().to_string()),
        _ => bail!("dpkg-shlibdeps found no dependencies: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: fwctl-guard\n\n\
Files: *\n\
License: MIT or Apache-2.0\n \
The agent is MIT OR Apache-2.0; the eBPF programs built into it are MIT OR GPL-2.0\n \
(they declare \"Dual MIT/GPL\" to the kernel).\n";

fn mkdir(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    mkdir(to.parent().expect("staged paths have a parent"), 0o755)?;
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    mkdir(to.parent().expect("staged paths have a parent"), 0o755)?;
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}
