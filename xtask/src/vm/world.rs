//! The LSM worlds a guest kernel boots in. Whether BPF LSM programs run depends on the
//! *active* LSM list (`/sys/kernel/security/lsm`), not on CONFIG_BPF_LSM: every kernel of
//! the matrix has `bpf` in its default list, and fleets that run Ubuntu's generic kernels
//! (`landlock,lockdown,yama,integrity,apparmor`), Azure Linux or Flatcar do not. On those
//! an LSM program attaches without error and never runs. The `ubuntu` world reproduces
//! that on any kernel by appending Ubuntu's list to the kernel command line.
//!
//! The guest learns its world from `FWCTL_GUARD_LSM_WORLD` in `/etc/fwctl-guard-bed`
//! (`bpf-active` or `bpf-inactive`), which `vm/guest-tests.sh` checks against the active
//! list and exports to the tests, so they can assert which hook set `hook: auto` chooses.
//!
//! Not here: what a kernel's guest loads and runs (`bed`), the QEMU command (`qemu`).

/// One LSM configuration of a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    /// The kernel's own default LSM list: BPF LSM active.
    #[value(name = "default")]
    Default,
    /// Ubuntu 22.04/24.04's list on the command line: BPF LSM not active.
    #[value(name = "ubuntu")]
    Ubuntu,
}

impl World {
    pub const ALL: [World; 2] = [World::Default, World::Ubuntu];

    /// The name in `--lsm`, log files and summaries.
    pub fn name(self) -> &'static str {
        match self {
            World::Default => "default",
            World::Ubuntu => "ubuntu",
        }
    }

    /// `FWCTL_GUARD_LSM_WORLD` in the guest: what the tests may rely on.
    pub fn guest_name(self) -> &'static str {
        match self {
            World::Default => "bpf-active",
            World::Ubuntu => "bpf-inactive",
        }
    }

    /// What this world appends to the kernel command line.
    pub fn kernel_args(self) -> Option<&'static str> {
        match self {
            World::Default => None,
            World::Ubuntu => Some("lsm=landlock,lockdown,yama,integrity,apparmor"),
        }
    }
}

/// The worlds `--lsm` selects: one, or `both`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worlds(pub Vec<World>);

/// `default`, `ubuntu` or `both`.
pub fn parse_worlds(text: &str) -> Result<Worlds, String> {
    if text == "both" {
        return Ok(Worlds(World::ALL.to_vec()));
    }
    <World as clap::ValueEnum>::from_str(text, false)
        .map(|w| Worlds(vec![w]))
        .map_err(|_| format!("unknown LSM world '{text}': one of default, ubuntu, both"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_parse() {
        assert_eq!(parse_worlds("default"), Ok(Worlds(vec![World::Default])));
        assert_eq!(parse_worlds("ubuntu"), Ok(Worlds(vec![World::Ubuntu])));
        assert_eq!(parse_worlds("both"), Ok(Worlds(vec![World::Default, World::Ubuntu])));
        assert!(parse_worlds("selinux").is_err());
    }

    #[test]
    fn only_the_default_world_keeps_bpf_in_the_list() {
        assert_eq!(World::Default.kernel_args(), None);
        let ubuntu = World::Ubuntu.kernel_args().unwrap();
        let list = ubuntu.strip_prefix("lsm=").unwrap();
        assert!(!list.split(',').any(|lsm| lsm == "bpf"), "{ubuntu}");
        assert_eq!(World::Ubuntu.guest_name(), "bpf-inactive");
    }
}
