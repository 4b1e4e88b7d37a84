//! The guest kernels of the VM test bed: which kernels the matrix has ([`Series`]), where
//! each comes from (its source), and one cache that keeps them ready to boot.
//!
//! | series | source                                  | packages or recipe                                        |
//! |--------|-----------------------------------------|-----------------------------------------------------------|
//! | 6.1    | Debian bookworm ([`debian`])            | `linux-image-6.1.0-N-amd64-unsigned` (vmlinuz + modules)   |
//! | 6.12   | Debian trixie ([`debian`])              | `linux-image-6.12.N+debM-amd64-unsigned` (vmlinuz + modules) |
//! | 7.2    | Debian sid ([`debian`])                 | `linux-binary-7.2.N+debM-amd64` + `linux-modules-…` + `linux-base-…` |
//! | fwctl  | built here ([`fwctl`])                  | Debian's `linux-source-7.2` (pinned) + a config fragment + the cxl_test mock |
//!
//! The cache ([`cache`]) is the same for both sources: a folder per kernel under
//! `~/.cache/fwctl-guard/vm/kernels/` (`<series>` for Debian's, `fwctl-<key>` for the built
//! one), holding `root/` and the stamp `release`, written last. A source only fills a
//! fresh folder and says which release it put there; it never looks at the cache itself.
//!
//! Not here: what a guest loads and runs on a kernel (`bed`), the initramfs, QEMU.

mod cache;
mod debian;
mod fwctl;

use anyhow::Result;

use super::bed::{self, Bed};
pub use cache::Kernel;

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
enum Source {
    /// Debian's binary packages.
    Debian(debian::Packages),
    /// Built here from Debian's source package.
    Fwctl,
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

    fn source(self) -> Source {
        match self {
            Series::V6_1 => Source::Debian(debian::Packages {
                suite: "bookworm",
                prefix: "linux-image-6.1.0-",
                suffix: "-amd64-unsigned",
                companions: &[],
            }),
            Series::V6_12 => Source::Debian(debian::Packages {
                suite: "trixie",
                prefix: "linux-image-6.12.",
                suffix: "-amd64-unsigned",
                companions: &[],
            }),
            // linux-binary-<abi>-amd64 holds vmlinuz, linux-modules-<abi>-amd64 the modules,
            // linux-base-<abi>-amd64 config, modules.builtin and modules.order.
            Series::V7_2 => Source::Debian(debian::Packages {
                suite: "sid",
                prefix: "linux-binary-7.2.",
                suffix: "-amd64",
                companions: &["linux-modules-7.2.", "linux-base-7.2."],
            }),
            Series::Fwctl => Source::Fwctl,
        }
    }
}

/// The cached kernel of `series`, fetching and unpacking (or building) it first when absent.
pub fn ensure(series: Series) -> Result<Kernel> {
    // Boots run side by side: one apt download at a time, one fwctl build, and neither
    // waits for the other.
    static DEBIAN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static FWCTL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let cache = cache::Cache::default_location()?;
    match series.source() {
        Source::Debian(packages) => {
            let _one_at_a_time = DEBIAN.lock().unwrap_or_else(|e| e.into_inner());
            let name = series.name();
            cache.ensure(name, name, |dir| debian::fetch_and_unpack(name, &packages, dir))
        }
        Source::Fwctl => {
            let _one_at_a_time = FWCTL.lock().unwrap_or_else(|e| e.into_inner());
            let recipe = fwctl::Recipe::from_repository()?;
            cache.ensure(&recipe.cache_name(), "fwctl", |dir| recipe.build(dir))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache folders are named by series: renaming one would make every existing
    /// cache a miss (and the Debian kernels download again).
    #[test]
    fn cache_names_are_the_series_names() {
        let names: Vec<&str> = Series::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["6.1", "6.12", "7.2", "fwctl"]);
    }
}
