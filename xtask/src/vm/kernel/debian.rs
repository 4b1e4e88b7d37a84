//! The Debian kernels of the matrix: the newest `amd64` build of a series, fetched with
//! `apt-get download` (its suite added to apt's sources, pinned, when missing), unpacked
//! with `dpkg -x` into a cache entry's `root/`, then `depmod` on the unpacked modules
//! (Debian generates modules.dep at install time; the packages do not ship it).
//!
//! Not here: whether a fetch is needed at all (the cache decides: a complete entry is used
//! as is and apt is not touched), which series use which packages (`kernel`'s table).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::cache;
use crate::cmd;
use crate::vm::apt::{self, Found};

/// The packages of one series.
pub struct Packages {
    /// Debian suite (`bookworm`, `trixie`, `sid`).
    pub suite: &'static str,
    /// The main package's name around its version part: `<prefix><version part><suffix>`.
    pub prefix: &'static str,
    pub suffix: &'static str,
    /// Packages needed beside the main one, at the same version: the main package's name
    /// with `prefix` replaced by each of these.
    pub companions: &'static [&'static str],
}

/// Downloads the newest packages of `packages` into `entry`, unpacks them into
/// `entry/root`, runs depmod, removes the `.deb`s; returns the release.
pub fn fetch_and_unpack(series: &str, packages: &Packages, entry: &Path) -> Result<String> {
    let debs = fetch(series, packages, entry)?;
    let root = entry.join("root");
    fs::create_dir_all(&root)?;
    for deb in &debs {
        cmd::run(Command::new("dpkg").arg("-x").arg(deb).arg(&root))?;
    }
    let release = find_release(&root)?;
    let kernel = cache::locate(&root, &release)?;
    let base =
        kernel.modules.parent().and_then(Path::parent).and_then(Path::parent).expect("…/lib/modules/<rel>");
    cmd::run(Command::new("depmod").arg("-b").arg(base).arg(&release))?;
    for deb in &debs {
        fs::remove_file(deb).ok();
    }
    Ok(release)
}

/// Downloads this series' newest packages into `dir`; returns the `.deb` paths.
fn fetch(series: &str, packages: &Packages, dir: &Path) -> Result<Vec<PathBuf>> {
    let Packages { suite, prefix, suffix, companions } = *packages;
    let fresh = suite != "bookworm" && apt::ensure_suite(suite)?;
    let mut main = apt::newest(suite, prefix, suffix)?;
    if main.is_none() && !fresh {
        apt::update_suite(suite)?;
        main = apt::newest(suite, prefix, suffix)?;
    }
    let Some(main) = main else {
        bail!("Debian {suite} has no {prefix}*{suffix} package");
    };
    let mut wanted = vec![main.clone()];
    for companion in companions {
        let package = companion_name(&main.package, prefix, companion);
        if !apt::versions_in(&package, suite)?.contains(&main.version) {
            bail!("Debian {suite} has no {package} {} to go with {}", main.version, main.package);
        }
        wanted.push(Found { package, version: main.version.clone() });
    }
    let mut debs = Vec::new();
    for found in &wanted {
        println!("vm: kernel {series}: downloading {} {}", found.package, found.version);
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

/// `linux-binary-7.2.13+deb14-amd64` with prefix `linux-binary-7.2.` and companion
/// `linux-modules-7.2.` → `linux-modules-7.2.13+deb14-amd64`.
fn companion_name(main: &str, prefix: &str, companion: &str) -> String {
    match main.strip_prefix(prefix) {
        Some(rest) => format!("{companion}{rest}"),
        None => main.replacen(prefix, companion, 1),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_share_the_main_package_version_part() {
        let main = "linux-binary-7.2.13+deb14-amd64";
        assert_eq!(
            companion_name(main, "linux-binary-7.2.", "linux-modules-7.2."),
            "linux-modules-7.2.13+deb14-amd64"
        );
        assert_eq!(
            companion_name(main, "linux-binary-7.2.", "linux-base-7.2."),
            "linux-base-7.2.13+deb14-amd64"
        );
    }

    #[test]
    fn one_release_per_unpacked_tree() {
        let dir = std::env::temp_dir().join(format!("xtask-find-release-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        assert!(find_release(&dir).unwrap_err().to_string().contains("no lib/modules"));
        fs::create_dir_all(dir.join("usr/lib/modules/7.2.13+deb14-amd64")).unwrap();
        assert_eq!(find_release(&dir).unwrap(), "7.2.13+deb14-amd64");
        fs::create_dir_all(dir.join("usr/lib/modules/7.2.12+deb14-amd64")).unwrap();
        assert!(find_release(&dir).unwrap_err().to_string().contains("expected one kernel"));
        fs::remove_dir_all(&dir).ok();
    }
}
