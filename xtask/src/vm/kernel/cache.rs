//! The kernel cache, one for every source: `~/.cache/fwctl-guard/vm/kernels/<name>/` holds
//! `root/` (vmlinuz and the modules, as installed) and the stamp `release` (the `uname -r`),
//! written last. With the stamp present the folder is used as is and nothing else runs (no
//! apt, no make); without it the folder is an interrupted fill and is emptied and filled
//! again. A lock file beside it (`<name>.lock`) keeps two runs (two clones on one machine)
//! from filling the same entry at once: the second waits, then uses what the first made.
//! Delete a folder to fetch or build that kernel again.
//!
//! Not here: how an entry is filled (the sources, `debian` and `fwctl`) or what a name
//! means; the cache only needs names that stay the same between runs.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::paths;

/// The stamp file: its presence means the entry is complete.
const STAMP: &str = "release";
/// The installed tree inside an entry.
const ROOT: &str = "root";

/// A cached kernel, ready to boot.
pub struct Kernel {
    /// `uname -r` of the guest, e.g. `7.2.13+deb14-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `<root>/…/lib/modules/<release>`, with a fresh `modules.dep`.
    pub modules: PathBuf,
}

/// The folder that holds the entries.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// `~/.cache/fwctl-guard/vm/kernels` (or under `$XDG_CACHE_HOME`).
    pub fn default_location() -> Result<Self> {
        Ok(Self::at(paths::cache_dir()?.join("vm/kernels")))
    }

    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The entry `name`'s kernel; when the entry is not complete, `fill` is called with an
    /// empty folder, must install the kernel into `<folder>/root` and return its release.
    /// `label` names the kernel in progress lines.
    pub fn ensure(
        &self,
        name: &str,
        label: &str,
        fill: impl FnOnce(&Path) -> Result<String>,
    ) -> Result<Kernel> {
        let entry = self.dir.join(name);
        if let Some(kernel) = complete(&entry)? {
            return Ok(kernel);
        }
        fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let lock_path = self.lock_path(name);
        let lock =
            File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            println!("vm: kernel {label}: another process is filling {} (locked); waiting", entry.display());
            lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
        }
        if let Some(kernel) = complete(&entry)? {
            return Ok(kernel);
        }
        if entry.exists() {
            println!(
                "vm: kernel {label}: {} holds an unfinished fetch or build; starting over",
                entry.display()
            );
            fs::remove_dir_all(&entry).with_context(|| format!("cannot remove {}", entry.display()))?;
        }
        fs::create_dir_all(&entry).with_context(|| format!("cannot create {}", entry.display()))?;
        let start = Instant::now();
        let release = fill(&entry)?;
        let kernel = locate(&entry.join(ROOT), &release)?;
        // Last: only a complete entry carries the stamp.
        fs::write(entry.join(STAMP), format!("{release}\n"))
            .with_context(|| format!("cannot write {}", entry.join(STAMP).display()))?;
        println!(
            "vm: kernel {label}: {release} ready in {} (cached in {})",
            minutes(start.elapsed()),
            entry.display()
        );
        Ok(kernel)
    }

    /// `<dir>/<name>.lock` (not `Path::with_extension`, which would turn `6.12` into `6.lock`).
    fn lock_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }
}

/// `12m05s` (or `40.2s` under a minute).
pub fn minutes(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// The entry's kernel when its stamp is there.
fn complete(entry: &Path) -> Result<Option<Kernel>> {
    let Ok(release) = fs::read_to_string(entry.join(STAMP)) else { return Ok(None) };
    let kernel = locate(&entry.join(ROOT), release.trim()).with_context(|| {
        format!("{} is stamped complete but broken: delete it to start over", entry.display())
    })?;
    Ok(Some(kernel))
}

/// The paths of an installed kernel tree: modules under `usr/lib/modules` or `lib/modules`,
/// vmlinuz in `boot/` (bookworm, trixie, the built kernel) or beside the modules (sid's
/// `linux-binary`).
pub fn locate(root: &Path, release: &str) -> Result<Kernel> {
    let modules = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|base| root.join(base).join(release))
        .find(|p| p.is_dir())
        .with_context(|| format!("no modules for {release} in {}", root.display()))?;
    let vmlinuz = [root.join(format!("boot/vmlinuz-{release}")), modules.join("vmlinuz")]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("no vmlinuz for {release} in {}", root.display()))?;
    Ok(Kernel { release: release.to_string(), vmlinuz, modules })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use anyhow::bail;

    use super::*;

    /// A scratch cache folder, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("xtask-kernel-cache-{}-{test}", std::process::id()));
            fs::remove_dir_all(&dir).ok();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            fs::remove_dir_all(&self.0).ok();
        }
    }

    /// Installs a minimal kernel tree (sid layout: vmlinuz beside the modules).
    fn install(entry: &Path, release: &str) -> Result<String> {
        let modules = entry.join(ROOT).join("usr/lib/modules").join(release);
        fs::create_dir_all(&modules)?;
        fs::write(modules.join("vmlinuz"), b"kernel")?;
        Ok(release.to_string())
    }

    #[test]
    fn a_miss_fills_and_stamps_then_hits_without_filling() {
        let scratch = Scratch::new("hit");
        let cache = Cache::at(scratch.0.clone());
        let kernel = cache.ensure("7.2", "7.2", |dir| install(dir, "7.2.13+deb14-amd64")).unwrap();
        assert_eq!(kernel.release, "7.2.13+deb14-amd64");
        assert!(
            kernel.vmlinuz.ends_with("usr/lib/modules/7.2.13+deb14-amd64/vmlinuz"),
            "{:?}",
            kernel.vmlinuz
        );
        assert_eq!(fs::read_to_string(scratch.0.join("7.2/release")).unwrap(), "7.2.13+deb14-amd64\n");
        assert!(scratch.0.join("7.2.lock").is_file());
        let again =
            cache.ensure("7.2", "7.2", |_| panic!("a stamped entry must not be filled again")).unwrap();
        assert_eq!(again.vmlinuz, kernel.vmlinuz);
    }

    #[test]
    fn an_unstamped_entry_is_emptied_and_filled_again() {
        let scratch = Scratch::new("unfinished");
        let cache = Cache::at(scratch.0.clone());
        let entry = scratch.0.join("fwctl-0123456789abcdef");
        fs::create_dir_all(entry.join("build")).unwrap();
        fs::write(entry.join("build/half.o"), b"").unwrap();
        let seen_empty = Cell::new(false);
        cache
            .ensure("fwctl-0123456789abcdef", "fwctl", |dir| {
                seen_empty.set(fs::read_dir(dir)?.next().is_none());
                install(dir, "7.2.13-fwctl-guard")
            })
            .unwrap();
        assert!(seen_empty.get(), "the fill must start from an empty folder");
        assert!(!entry.join("build").exists());
    }

    #[test]
    fn a_failed_fill_leaves_no_stamp() {
        let scratch = Scratch::new("failed");
        let cache = Cache::at(scratch.0.clone());
        let err = cache.ensure("6.1", "6.1", |_| -> Result<String> { bail!("download failed") });
        assert!(err.is_err());
        assert!(!scratch.0.join("6.1/release").exists());
        // A fill that reports a release it did not install is no complete entry either.
        let err = cache.ensure("6.1", "6.1", |_| Ok("6.1.0-40-amd64".to_string())).err().unwrap().to_string();
        assert!(err.contains("no modules for 6.1.0-40-amd64"), "{err}");
        assert!(!scratch.0.join("6.1/release").exists());
        cache.ensure("6.1", "6.1", |dir| install(dir, "6.1.0-40-amd64")).unwrap();
    }

    #[test]
    fn lock_files_keep_the_whole_name() {
        let cache = Cache::at(PathBuf::from("/c"));
        assert_eq!(cache.lock_path("6.12"), Path::new("/c/6.12.lock"));
        assert_eq!(cache.lock_path("6.1"), Path::new("/c/6.1.lock"));
        // The name the fwctl kernel's lock had before the cache was shared.
        assert_eq!(cache.lock_path("fwctl-9be824219a7aacdd"), Path::new("/c/fwctl-9be824219a7aacdd.lock"));
    }

    #[test]
    fn locate_finds_both_layouts() {
        let scratch = Scratch::new("layouts");
        let bookworm = scratch.0.join("bookworm");
        fs::create_dir_all(bookworm.join("lib/modules/6.1.0-40-amd64")).unwrap();
        fs::create_dir_all(bookworm.join("boot")).unwrap();
        fs::write(bookworm.join("boot/vmlinuz-6.1.0-40-amd64"), b"").unwrap();
        let k = locate(&bookworm, "6.1.0-40-amd64").unwrap();
        assert!(k.vmlinuz.ends_with("boot/vmlinuz-6.1.0-40-amd64"));
        assert!(k.modules.ends_with("lib/modules/6.1.0-40-amd64"));
        let missing = locate(&bookworm, "6.2").err().unwrap().to_string();
        assert!(missing.contains("no modules for 6.2"), "{missing}");
    }
}
