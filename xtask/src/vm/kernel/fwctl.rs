//! The fwctl test kernel's source (`--kernel fwctl`): no Debian kernel enables fwctl, so
//! this one is built from Debian's own source package, [`SOURCE_PACKAGE`] at the pinned
//! [`SOURCE_VERSION`] (sid), with `vm/fwctl-kernel/config.fragment` (FWCTL, CXL_FEATURES,
//! BPF LSM, BTF, …) and the kernel's `tools/testing/cxl` mock (cxl_test), whose memdevs
//! register real fwctl devices. `vm/fwctl-kernel/cxl-test-type2.patch` fixes the mock's
//! build in that source.
//!
//! Steps (a cold build is about 21–25 minutes on 2 cores): `apt-get download` + `dpkg -x` +
//! untar; the patch; `make x86_64_defconfig`, `merge_config.sh` with the fragment,
//! `make olddefconfig`, then a check that every option of the fragment survived;
//! `make bzImage modules`, `make M=tools/testing/cxl modules`; both `modules_install`s
//! (debug info stripped, BTF kept; the mock's modules land in `updates/`, which depmod
//! prefers over the regular CXL modules); `depmod`. The source tree is deleted after a
//! successful build; the cache entry keeps `root/` (vmlinuz, config, modules) and `build.log`.
//!
//! Cache entry name: `fwctl-<key>`, key = hash of (build recipe, source version, fragment
//! bytes, patch bytes), so editing the fragment or the patch builds again. The cache itself
//! (stamp, lock, interrupted builds) is `cache`'s; this module only builds into a fresh folder.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cache::minutes;
use crate::vm::apt::{self, Found};
use crate::vm::host;
use crate::{cmd, paths};

/// Debian's kernel source package and the version the fragment and patch were made for.
pub const SOURCE_PACKAGE: &str = "linux-source-7.2";
pub const SOURCE_VERSION: &str = "7.2.13-1";
/// The suite that carries it.
const SUITE: &str = "sid";
/// Bumped when the steps below change in a way that changes the result.
const RECIPE: &str = "fwctl-kernel recipe 1";

/// Kept in the repository, relative to the workspace root.
const FRAGMENT: &str = "vm/fwctl-kernel/config.fragment";
const PATCH: &str = "vm/fwctl-kernel/cxl-test-type2.patch";
/// The cxl_test mock's directory inside the kernel source.
const MOCK: &str = "tools/testing/cxl";

/// How often a running make says it is still alive.
const HEARTBEAT: Duration = Duration::from_secs(60);
/// Lines of a failed step's log shown.
const TAIL_LINES: usize = 60;

/// What the build is made of: the repository's fragment and patch.
pub struct Recipe {
    fragment: PathBuf,
    patch: PathBuf,
    key: String,
}

impl Recipe {
    /// Reads the fragment and the patch from the workspace.
    pub fn from_repository() -> Result<Self> {
        let root = paths::workspace_root();
        let (fragment, patch) = (root.join(FRAGMENT), root.join(PATCH));
        let key = cache_key(
            &fs::read(&fragment).with_context(|| format!("cannot read {FRAGMENT}"))?,
            &fs::read(&patch).with_context(|| format!("cannot read {PATCH}"))?,
        );
        Ok(Self { fragment, patch, key })
    }

    /// The cache entry's name, `fwctl-<key>`.
    pub fn cache_name(&self) -> String {
        format!("fwctl-{}", self.key)
    }

    /// Builds into the empty folder `dir`; returns the release.
    pub fn build(&self, dir: &Path) -> Result<String> {
        build(dir, &self.fragment, &self.patch)
    }
}

/// FNV-1a (64 bit) over the recipe, the source version and the two files, each
/// length-prefixed: a cache key, not a security boundary.
fn cache_key(fragment: &[u8], patch: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [RECIPE.as_bytes(), SOURCE_VERSION.as_bytes(), fragment, patch] {
        for byte in (part.len() as u64).to_le_bytes().iter().chain(part) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Builds into `dir` (`build/` for the source, `root/` for the result); returns the release.
fn build(dir: &Path, fragment: &Path, patch: &Path) -> Result<String> {
    host::ensure_kernel_build()?;
    let log = dir.join("build.log");
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    let mut phase = |name, t: Instant| phases.push((name, t.elapsed()));

    let t = Instant::now();
    let work = dir.join("build");
    fs::create_dir_all(&work)?;
    let deb = download(&work)?;
    phase("download", t);

    let t = Instant::now();
    let src = unpack(&deb, &work)?;
    cmd::run(Command::new("patch").current_dir(&src).args(["-p1", "--forward", "--batch", "-i"]).arg(patch))
        .with_context(|| format!("{PATCH} does not apply to {SOURCE_PACKAGE} {SOURCE_VERSION}"))?;
    phase("unpack", t);

    let t = Instant::now();
    println!("vm: kernel fwctl: configuring (make output in {})", log.display());
    make(&src, &log, "x86_64_defconfig", &["x86_64_defconfig"])?;
    let merge = src.join("scripts/kconfig/merge_config.sh");
    run_logged(
        Command::new("sh").current_dir(&src).arg(merge).args(["-m", ".config"]).arg(fragment),
        &log,
        "merge_config.sh",
    )?;
    make(&src, &log, "olddefconfig", &["olddefconfig"])?;
    let config = fs::read_to_string(src.join(".config"))?;
    verify_config(&fs::read_to_string(fragment)?, &config)?;
    phase("configure", t);

    let t = Instant::now();
    let jobs = format!("-j{}", std::thread::available_parallelism().map_or(2, |n| n.get()));
    println!("vm: kernel fwctl: compiling (about 25 minutes on 2 cores; a line per minute)");
    make(&src, &log, "bzImage modules", &[&jobs, "bzImage", "modules"])?;
    let mock = format!("M={MOCK}");
    make(&src, &log, "cxl_test mock", &[&jobs, &mock, "modules"])?;
    phase("compile", t);

    let t = Instant::now();
    let release = cmd::probe(Command::new("make").current_dir(&src).args(["-s", "kernelrelease"]))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .context("`make kernelrelease` gave nothing")?;
    let root = dir.join("root");
    let install_path = format!("INSTALL_MOD_PATH={}", root.display());
    // --strip-debug drops the DWARF (most of each .ko) and keeps the .BTF section.
    let install = [install_path.as_str(), "INSTALL_MOD_STRIP=1"];
    make(&src, &log, "modules_install", &[&install[..], &["modules_install"]].concat())?;
    make(&src, &log, "mock modules_install", &[&install[..], &[&mock, "modules_install"]].concat())?;
    let boot = root.join("boot");
    fs::create_dir_all(&boot)?;
    fs::copy(src.join("arch/x86/boot/bzImage"), boot.join(format!("vmlinuz-{release}")))?;
    fs::copy(src.join(".config"), boot.join(format!("config-{release}")))?;
    // `build` and `source` point into the source tree, which is deleted below.
    let modules = root.join("lib/modules").join(&release);
    for link in ["build", "source"] {
        fs::remove_file(modules.join(link)).ok();
    }
    cmd::run(Command::new("depmod").arg("-b").arg(&root).arg(&release))?;
    check_mock_installed(&root, &release)?;
    phase("install", t);

    fs::remove_dir_all(&work).with_context(|| format!("cannot remove {}", work.display()))?;
    let shown: Vec<String> = phases.iter().map(|(name, d)| format!("{name} {}", minutes(*d))).collect();
    println!("vm: kernel fwctl: {release}: {}", shown.join(", "));
    Ok(release)
}

/// Downloads the pinned source package into `dir`; refuses with an explanation when
/// Debian no longer offers that version.
fn download(dir: &Path) -> Result<PathBuf> {
    let fresh = apt::ensure_suite(SUITE)?;
    let mut versions = apt::versions_in(SOURCE_PACKAGE, SUITE)?;
    if !versions.iter().any(|v| v == SOURCE_VERSION) && !fresh {
        apt::update_suite(SUITE)?;
        versions = apt::versions_in(SOURCE_PACKAGE, SUITE)?;
    }
    if !versions.iter().any(|v| v == SOURCE_VERSION) {
        bail!(
            "Debian {SUITE} no longer offers {SOURCE_PACKAGE} {SOURCE_VERSION}, the version the fwctl test \
             kernel is pinned to (it offers: {}). To move on: set SOURCE_VERSION in \
             xtask/src/vm/kernel/fwctl.rs to an offered version, then run `cargo xtask vm-test --kernel fwctl` \
             and check that {PATCH} still applies (or is no longer needed) and that every option of \
             {FRAGMENT} survives the new source's Kconfig",
            if versions.is_empty() { "none".to_string() } else { versions.join(", ") }
        );
    }
    let found = Found { package: SOURCE_PACKAGE.to_string(), version: SOURCE_VERSION.to_string() };
    println!("vm: kernel fwctl: downloading {SOURCE_PACKAGE} {SOURCE_VERSION}");
    apt::download(&found, dir)?;
    let prefix = format!("{SOURCE_PACKAGE}_");
    fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".deb")
        })
        .with_context(|| format!("apt-get download left no {prefix}*.deb in {}", dir.display()))
}

/// `dpkg -x` the package, untar the source it carries into `dir`; returns the source tree.
fn unpack(deb: &Path, dir: &Path) -> Result<PathBuf> {
    let pkg = dir.join("pkg");
    cmd::run(Command::new("dpkg").arg("-x").arg(deb).arg(&pkg))?;
    let tarball = pkg.join(format!("usr/src/{SOURCE_PACKAGE}.tar.xz"));
    if !tarball.is_file() {
        bail!("{} has no usr/src/{SOURCE_PACKAGE}.tar.xz", deb.display());
    }
    cmd::run(Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(dir))?;
    fs::remove_dir_all(&pkg)?;
    fs::remove_file(deb)?;
    let src = dir.join(SOURCE_PACKAGE);
    if !src.join("Makefile").is_file() {
        bail!("{} did not unpack into {}", tarball.display(), src.display());
    }
    Ok(src)
}

/// Every `CONFIG_X=value` of the fragment must be in `.config` as is, and every
/// `# CONFIG_X is not set` must not be set there: Kconfig silently drops an option whose
/// dependencies are not met.
fn verify_config(fragment: &str, config: &str) -> Result<()> {
    let set: Vec<&str> = config.lines().filter(|l| l.starts_with("CONFIG_")).collect();
    let value_of =
        |name: &str| set.iter().find(|l| l.split_once('=').is_some_and(|(n, _)| n == name)).copied();
    let mut lost = Vec::new();
    for line in fragment.lines().map(str::trim) {
        let off = line.strip_prefix("# ").and_then(|l| l.strip_suffix(" is not set"));
        if let Some(name) = off.filter(|n| n.starts_with("CONFIG_")) {
            if let Some(actual) = value_of(name) {
                lost.push(format!("{name} should be off, but .config has {actual}"));
            }
        } else if let Some((name, _)) = line.split_once('=').filter(|_| line.starts_with("CONFIG_")) {
            if !set.contains(&line) {
                let actual = value_of(name).unwrap_or("it unset");
                lost.push(format!("{line} did not survive (.config has {actual})"));
            }
        }
    }
    if !lost.is_empty() {
        bail!(
            "{FRAGMENT}: {} option(s) lost in `make olddefconfig` (a dependency is missing; \
             `make menuconfig` and `/` show what each depends on):\n  {}",
            lost.len(),
            lost.join("\n  ")
        );
    }
    Ok(())
}

/// The mock's modules must be installed under `updates/`, be the ones modules.dep names,
/// and carry BTF (a `.BTF` section, which `INSTALL_MOD_STRIP` keeps) for fentry programs.
fn check_mock_installed(root: &Path, release: &str) -> Result<()> {
    let modules = root.join("lib/modules").join(release);
    let dep = fs::read_to_string(modules.join("modules.dep"))?;
    for name in ["cxl_test", "cxl_mock", "cxl_mock_mem", "cxl_core", "cxl_acpi"] {
        let file = format!("/{name}.ko");
        let Some((path, _)) = dep.lines().filter_map(|l| l.split_once(':')).find(|(p, _)| p.ends_with(&file))
        else {
            bail!("{name}.ko is missing from {}/modules.dep", modules.display());
        };
        if !path.starts_with("updates/") {
            bail!("modules.dep names {path} for {name}, not the cxl_test mock's build under updates/");
        }
        let bytes = fs::read(modules.join(path))?;
        if !bytes.windows(5).any(|w| w == b".BTF\0") {
            bail!("{path} has no .BTF section (is pahole installed and DEBUG_INFO_BTF_MODULES on?)");
        }
    }
    Ok(())
}

/// `nice make <args>` in `src`, output appended to `log`.
fn make(src: &Path, log: &Path, what: &str, args: &[&str]) -> Result<()> {
    run_logged(Command::new("nice").current_dir(src).args(["-n", "10", "make"]).args(args), log, what)
}

/// Runs `cmd` with its output appended to `log`; prints a line with the log's last
/// line every [`HEARTBEAT`], and the log's tail when it fails.
fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    let shown = cmd::display(cmd);
    println!("$ {shown}");
    let out = File::options().create(true).append(true).open(log)?;
    cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{shown}`"))?;
    let mut next = HEARTBEAT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= next {
            let last = tail(log, 1).unwrap_or_default().join("");
            println!("vm: kernel fwctl: {what}: {} so far; {}", minutes(start.elapsed()), last.trim());
            next += HEARTBEAT;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if !status.success() {
        println!("vm: kernel fwctl: {what} failed; last lines of {}:", log.display());
        for line in tail(log, TAIL_LINES).unwrap_or_default() {
            println!("  | {line}");
        }
        bail!("`{shown}` failed ({status}); full output in {}", log.display());
    }
    Ok(())
}

/// The last `n` lines of a file (from its last 64 KiB).
fn tail(path: &Path, n: usize) -> Result<Vec<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(64 << 10)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    Ok(lines[lines.len().saturating_sub(n)..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of fixed inputs, as computed since the fwctl kernel was first cached: a
    /// change here makes every existing cache a miss (a 21-minute rebuild).
    #[test]
    fn key_is_stable() {
        assert_eq!(cache_key(b"CONFIG_FWCTL=y\n", b"patch"), "c12030e9b4d8bc23");
    }

    #[test]
    fn key_depends_on_every_input() {
        let base = cache_key(b"CONFIG_FWCTL=y\n", b"patch");
        assert_eq!(base.len(), 16);
        assert_eq!(base, cache_key(b"CONFIG_FWCTL=y\n", b"patch"));
        assert_ne!(base, cache_key(b"CONFIG_FWCTL=m\n", b"patch"));
        assert_ne!(base, cache_key(b"CONFIG_FWCTL=y\n", b"patch\n"));
        // Length prefixes: moving bytes between the inputs changes the key.
        assert_ne!(cache_key(b"ab", b"c"), cache_key(b"a", b"bc"));
    }

    #[test]
    fn config_check_names_lost_options() {
        let fragment = "# comment\nCONFIG_FWCTL=y\nCONFIG_LSM=\"bpf\"\n# CONFIG_DRM is not set\n# CONFIG_USB is not set\n";
        let good = "CONFIG_FWCTL=y\nCONFIG_LSM=\"bpf\"\n# CONFIG_DRM is not set\n";
        verify_config(fragment, good).unwrap();
        let bad = "CONFIG_FWCTL=m\nCONFIG_LSM=\"bpf\"\nCONFIG_DRM=y\n";
        let err = verify_config(fragment, bad).unwrap_err().to_string();
        assert!(err.contains("CONFIG_FWCTL=y did not survive (.config has CONFIG_FWCTL=m)"), "{err}");
        assert!(err.contains("CONFIG_DRM should be off, but .config has CONFIG_DRM=y"), "{err}");
        assert!(err.contains("2 option(s)"), "{err}");
        let unset = verify_config("CONFIG_CXL_FEATURES=y\n", "").unwrap_err().to_string();
        assert!(unset.contains("CONFIG_CXL_FEATURES=y did not survive (.config has it unset)"), "{unset}");
    }

    #[test]
    fn repository_fragment_is_well_formed() {
        let text = fs::read_to_string(paths::workspace_root().join(FRAGMENT)).unwrap();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let off = line.starts_with("# CONFIG_") && line.ends_with(" is not set");
            let on = line.starts_with("CONFIG_") && line.contains('=');
            assert!(off || on || line == "#" || line.starts_with("# "), "{FRAGMENT}: odd line {line:?}");
        }
        for required in
            ["CONFIG_FWCTL=y", "CONFIG_CXL_FEATURES=y", "CONFIG_BPF_LSM=y", "CONFIG_DEBUG_INFO_BTF_MODULES=y"]
        {
            assert!(text.lines().any(|l| l == required), "{FRAGMENT} lacks {required}");
        }
    }
}
