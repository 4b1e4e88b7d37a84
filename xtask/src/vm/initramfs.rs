//! The guest's initramfs (cpio newc, gzip), one per kernel and LSM world, built from scratch
//! on every run into `target/vm/<series>-<world>/` (a second or two), from the kernel's [`Bed`]:
//!
//! - `/init` = `vm/init.sh`, `/guest-tests.sh` = `vm/guest-tests.sh`, `/fwctl-guard` = the agent;
//! - `/etc/fwctl-guard-bed`: the bed's name, the devices init waits for, the suites to run,
//!   the LSM world;
//! - `/tests/integration`: the integration-test executable (the bed lists which suites run);
//! - busybox-static at `/bin/busybox` with a symlink per applet;
//! - the real clients `nvme` (nvme-cli) and `cxl` (ndctl) at their host paths, with every
//!   shared library `ldd` names and the dynamic loader (also for the agent);
//! - the bed's modules and everything `modules.dep` says they need, decompressed,
//!   in `/lib/modules/fwctl-guard/`, with `load.order` listing them dependencies first
//!   (init `insmod`s them in that order; modules built into the kernel are skipped).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::bed::Bed;
use super::kernel::Kernel;
use super::world::World;
use crate::{cmd, paths, privilege};

/// Client programs copied in with their libraries.
const CLIENTS: &[&str] = &["nvme", "cxl", "curl", "setpriv"];

/// Where the modules go inside the guest.
const GUEST_MODULES: &str = "lib/modules/fwctl-guard";

/// What the host puts into every guest: the agent and the compiled integration tests.
pub struct Payload {
    pub agent: PathBuf,
    /// The integration-test executable, `/tests/integration` in the guest.
    pub tests: PathBuf,
}

/// Builds `<out>/initramfs.cpio.gz` for `kernel`, its `bed` and the LSM `world` with the
/// payload inside; returns its path.
pub fn build(
    kernel: &Kernel,
    bed: &Bed,
    world: World,
    suites: &[&str],
    payload: &Payload,
    out: &Path,
) -> Result<PathBuf> {
    let agent = payload.agent.as_path();
    let root = out.join("root");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "etc",
        "root",
        GUEST_MODULES,
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    let vm = paths::workspace_root().join("vm");
    install(&vm.join("init.sh"), &root.join("init"))?;
    install(&vm.join("guest-tests.sh"), &root.join("guest-tests.sh"))?;
    install(agent, &root.join("fwctl-guard"))?;
    fs::write(root.join("etc/fwctl-guard-bed"), bed.guest_file(world, suites))?;

    install(&payload.tests, &root.join("tests/integration"))?;
    let mut elves = vec![agent.to_path_buf(), payload.tests.clone()];
    for client in CLIENTS {
        let host =
            privilege::which(client).with_context(|| format!("`{client}` is not installed on the host"))?;
        install(&host, &guest_path(&root, &host))?;
        elves.push(host);
    }
    for lib in libraries(&elves)? {
        install(&lib, &guest_path(&root, &lib))?;
    }
    busybox(&root)?;
    modules(kernel, bed, &root.join(GUEST_MODULES))?;

    let image = out.join("initramfs.cpio.gz");
    let script = format!(
        "set -o pipefail; cd '{}' && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 > '{}'",
        root.display(),
        image.display()
    );
    cmd::run(Command::new("bash").args(["-c", &script])).context("cannot pack the initramfs")?;
    Ok(image)
}

/// `/usr/sbin/nvme` → `<root>/usr/sbin/nvme`.
fn guest_path(root: &Path, host: &Path) -> PathBuf {
    root.join(host.strip_prefix("/").unwrap_or(host))
}

/// Copies a file (following symlinks) and makes it executable.
fn install(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Every shared library (and the loader) the dynamically linked `elves` need, per `ldd`.
fn libraries(elves: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for elf in elves {
        let out = Command::new("ldd").arg(elf).stderr(Stdio::null()).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            continue; // "not a dynamic executable"
        }
        for line in text.lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = match line.split_once("=>") {
                Some((name, rest)) => match rest.split_whitespace().next() {
                    Some(p) if p.starts_with('/') => p,
                    _ => bail!("{}: library {} not found", elf.display(), name.trim()),
                },
                None => line.split_whitespace().next().unwrap_or(""),
            };
            if path.starts_with('/') && !libs.iter().any(|l: &PathBuf| l == Path::new(path)) {
                libs.push(PathBuf::from(path));
            }
        }
    }
    Ok(libs)
}

/// busybox-static as `/bin/busybox`, plus a symlink for every applet not already present.
fn busybox(root: &Path) -> Result<()> {
    let host = privilege::which("busybox").context("busybox-static is not installed")?;
    install(&host, &root.join("bin/busybox"))?;
    let list = cmd::probe(Command::new(&host).arg("--list-full")).context("busybox --list-full failed")?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let link = root.join(applet);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir)?;
        }
        symlink("/bin/busybox", &link)?;
    }
    Ok(())
}

/// A module's name from its path: `…/nvme-core.ko.xz` → `nvme_core`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// Copies the bed's modules and their dependencies, decompressed, into `dest` and writes
/// `dest/load.order`.
fn modules(kernel: &Kernel, bed: &Bed, dest: &Path) -> Result<()> {
    let dep_file = kernel.modules.join("modules.dep");
    let dep_text =
        fs::read_to_string(&dep_file).with_context(|| format!("cannot read {}", dep_file.display()))?;
    // name → (path, dependency paths)
    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in dep_text.lines() {
        let Some((module, rest)) = line.split_once(':') else { continue };
        let list = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(module_name(module), (module.to_string(), list));
    }
    let builtin: HashSet<String> = fs::read_to_string(kernel.modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();

    let mut order: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for &name in bed.modules {
        if deps.contains_key(name) {
            visit(name, &deps, &mut seen, &mut order);
        } else if !builtin.contains(name) {
            bail!("kernel {} has module {name} neither as a module nor built in", kernel.release);
        }
    }
    for &name in bed.from_updates {
        match deps.get(name) {
            Some((path, _)) if path.starts_with("updates/") => {}
            other => bail!(
                "kernel {}: module {name} should come from updates/ (the cxl_test mock), modules.dep has {:?}",
                kernel.release,
                other.map(|(path, _)| path)
            ),
        }
    }
    let mut listing = String::new();
    for name in &order {
        let rel = &deps[name].0;
        let src = kernel.modules.join(rel);
        let file = format!("{name}.ko");
        decompress(&src, &dest.join(&file))?;
        listing.push_str(&file);
        listing.push('\n');
    }
    fs::write(dest.join("load.order"), listing)?;
    Ok(())
}

/// Depth-first: a module's dependencies before the module.
fn visit(
    name: &str,
    deps: &HashMap<String, (String, Vec<String>)>,
    seen: &mut HashSet<String>,
    order: &mut Vec<String>,
) {
    if !seen.insert(name.to_string()) {
        return;
    }
    if let Some((_, list)) = deps.get(name) {
        for dep in list {
            visit(&module_name(dep), deps, seen, order);
        }
    }
    order.push(name.to_string());
}

/// Copies a `.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz` as a plain `.ko`.
fn decompress(src: &Path, dst: &Path) -> Result<()> {
    let tool = match src.extension().and_then(|e| e.to_str()) {
        Some("ko") => {
            fs::copy(src, dst)?;
            return Ok(());
        }
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => bail!("unknown module format: {}", src.display()),
    };
    let status = Command::new(tool).arg("-dc").arg(src).stdout(File::create(dst)?).status()?;
    if !status.success() {
        bail!("`{tool} -dc {}` failed", src.display());
    }
    Ok(())
}
