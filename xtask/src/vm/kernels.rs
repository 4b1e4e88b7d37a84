//! The guest kernels: stock Debian kernels, the newest `amd64` build of each series,
//! fetched with `apt-get download`, unpacked with `dpkg -x` into
//! `~/.cache/fwctl-guard/vm/kernels/<series>/root`, with `depmod` run on the unpacked
//! modules; and the fwctl test kernel, built from source ([`fwctl_kernel`]). A finished
//! unpack is marked by a `release` file (the `uname -r`); when it exists the cache is
//! used as is and apt is not touched at all (delete the folder to pick up a newer kernel).
//!
//! | series | suite    | packages                                                    |
//! |--------|----------|-------------------------------------------------------------|
//! | 6.1    | bookworm | `linux-image-6.1.0-N-amd64-unsigned` (vmlinuz + modules)     |
//! | 6.12   | trixie   | `linux-image-6.12.N+debM-amd64-unsigned` (vmlinuz + modules) |
//! | 7.2    | sid      | `linux-binary-7.2.N+debM-amd64` + `linux-modules-…` + `linux-base-…` |
//! | fwctl  | sid      | built from `linux-source-7.2` (pinned version)               |

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::apt::{self, Found};
use super::bed::{self, Bed};
use super::fwctl_kernel;
use crate::{cmd, paths};

/// A kernel of the test matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Series {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    #[value(name = "7.2")]
    V7_2,
    /// The fwctl test kernel (7.2 source, FWCTL + CXL_FEATURES, the cxl_test mock).
    #[value(name = "fwctl")]
    Fwctl,
}

/// Where a series' kernel comes from.
enum Origin {
    /// Debian's binary packages: the suite and the main package's name around its
    /// version part (prefix, suffix).
    Debian { suite: &'static str, prefix: &'static str, suffix: &'static str },
    /// Built here from source.
    Built,
}

impl Series {
    pub const ALL: [Series; 4] = [Series::V6_1, Series::V6_12, Series::V7_2, Series::Fwctl];

    pub fn name(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
            Series::V7_2 => "7.2",
            Series::Fwctl => "fwctl",
        }
    }

    /// The test bed this kernel boots into.
    pub fn bed(self) -> &'static Bed {
        match self {
            Series::Fwctl => &bed::FWCTL,
            _ => &bed::STOCK,
        }
    }

    fn origin(self) -> Origin {
        match self {
            Series::V6_1 => {
                Origin::Debian { suite: "bookworm", prefix: "linux-image-6.1.0-", suffix: "-amd64-unsigned" }
            }
            Series::V6_12 => {
                Origin::Debian { suite: "trixie", prefix: "linux-image-6.12.", suffix: "-amd64-unsigned" }
            }
            Series::V7_2 => Origin::Debian { suite: "sid", prefix: "linux-binary-7.2.", suffix: "-amd64" },
            Series::Fwctl => Origin::Built,
        }
    }
}

/// An unpacked kernel, ready to boot.
pub struct Kernel {
    /// `uname -r` of the guest, e.g. `7.2.13+deb14-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `<root>/…/lib/modules/<release>`, with a fresh `modules.dep`.
    pub modules: PathBuf,
}

/// The cached kernel of `series`, fetching and unpacking (or building) it first when absent.
pub fn ensure(series: Series) -> Result<Kernel> {
    let Origin::Debian { suite, prefix, suffix } = series.origin() else {
        return fwctl_kernel::ensure();
    };
    let dir = paths::cache_dir()?.join("vm/kernels").join(series.name());
    let stamp = dir.join("release");
    if let Ok(release) = fs::read_to_string(&stamp) {
        return locate(&dir.join("root"), release.trim());
    }
    let debs = fetch(series, (suite, prefix, suffix), &dir)?;
    let root = dir.join("root");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    fs::create_dir_all(&root)?;
    for deb in &debs {
        cmd::run(Command::new("dpkg").arg("-x").arg(deb).arg(&root))?;
    }
    let release = find_release(&root)?;
    let kernel = locate(&root, &release)?;
    // Debian generates modules.dep at install time; the packages do not ship it.
    let base =
        kernel.modules.parent().and_then(Path::parent).and_then(Path::parent).expect("…/lib/modules/<rel>");
    cmd::run(Command::new("depmod").arg("-b").arg(base).arg(&release))?;
    fs::write(&stamp, format!("{release}\n"))?;
    for deb in &debs {
        fs::remove_file(deb).ok();
    }
    Ok(kernel)
}

/// Downloads this series' newest packages into `dir`; returns the `.deb` paths.
fn fetch(series: Series, (suite, prefix, suffix): (&str, &str, &str), dir: &Path) -> Result<Vec<PathBuf>> {
    let fresh = suite != "bookworm" && apt::ensure_suite(suite)?;
    let mut main = apt::newest(suite, prefix, suffix)?;
    if main.is_none() && !fresh {
        apt::update_suite(suite)?;
        main = apt::newest(suite, prefix, suffix)?;
    }
    let Some(main) = main else {
        bail!("Debian {suite} has no {prefix}*{suffix} package");
    };
    let mut packages = vec![main.clone()];
    if series == Series::V7_2 {
        // linux-binary-<abi>-amd64 holds vmlinuz, linux-modules-<abi>-amd64 the modules,
        // linux-base-<abi>-amd64 config, modules.builtin and modules.order.
        for part in ["linux-modules-", "linux-base-"] {
            let package = main.package.replacen("linux-binary-", part, 1);
            if !apt::versions_in(&package, suite)?.contains(&main.version) {
                bail!("Debian {suite} has no {package} {} to go with {}", main.version, main.package);
            }
            packages.push(Found { package, version: main.version.clone() });
        }
    }
    fs::create_dir_all(dir)?;
    for stale in fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())) {
        if stale.extension().is_some_and(|x| x == "deb") {
            fs::remove_file(stale)?;
        }
    }
    let mut debs = Vec::new();
    for found in &packages {
        println!("vm: kernel {}: downloading {} {}", series.name(), found.package, found.version);
        apt::download(found, dir)?;
        let prefix = format!("{}_", found.package);
        let deb = fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".deb")
            })
            .with_context(|| format!("apt-get download left no {prefix}*.deb in {}", dir.display()))?;
        debs.push(deb);
    }
    Ok(debs)
}

/// The single `lib/modules/<release>` in an unpacked tree (`usr/lib` or `lib`).
fn find_release(root: &Path) -> Result<String> {
    for base in ["usr/lib/modules", "lib/modules"] {
        if let Ok(entries) = fs::read_dir(root.join(base)) {
            let names: Vec<String> =
                entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into()).collect();
            if let [one] = names.as_slice() {
                return Ok(one.clone());
            }
            bail!("expected one kernel under {}, found {names:?}", root.join(base).display());
        }
    }
    bail!("no lib/modules in {}", root.display())
}

/// The paths of an unpacked (or installed) kernel.
pub fn locate(root: &Path, release: &str) -> Result<Kernel> {
    let modules = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|base| root.join(base).join(release))
        .find(|p| p.is_dir())
        .with_context(|| format!("no modules for {release} in {}", root.display()))?;
    // bookworm/trixie: /boot/vmlinuz-<release>; sid's linux-binary: …/modules/<release>/vmlinuz.
    let vmlinuz = [root.join(format!("boot/vmlinuz-{release}")), modules.join("vmlinuz")]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("no vmlinuz for {release} in {}", root.display()))?;
    Ok(Kernel { release: release.to_string(), vmlinuz, modules })
}
