//! The hook sets: which eBPF programs see passthrough commands, where each one attaches,
//! what it can do, and what the kernel needs for it. This table is the one description
//! of "what runs where": the agent's loader attaches from it, `fwctl-guard probe` reports
//! from it, pins and metrics take their labels from it, and the tests read it.
//!
//! A hook set is chosen once per agent (config `hook`); [`COMPANIONS`] attach beside
//! whichever set runs, where the kernel has what they need. Adding a hook set is one row
//! here plus its programs in the eBPF crate.
//!
//! Not for: attaching (the agent's `kernel` module does that) or deciding which set a
//! kernel can run (that is found by trying, since a program the kernel accepts may still
//! never run).

use crate::canary::slot;

/// Hook set ids: the value of `Event::hook`, so the audit log says which set saw a command.
pub mod id {
    pub const TRACEPOINT: u8 = 1;
    pub const LSM: u8 = 2;
    pub const TRAMPOLINE: u8 = 3;
}

/// How a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// BPF LSM program on the named LSM hook (`security_<hook>` calls it when `bpf` is active).
    Lsm(&'static str),
    /// fexit on a vmlinux function.
    FExit(&'static str),
    /// A classic tracepoint (category, event).
    TracePoint(&'static str, &'static str),
    /// A kprobe on a kernel function (modules included).
    KProbe(&'static str),
    /// fmod_ret (BPF_MODIFY_RETURN) on a vmlinux `security_*` function: a non-zero return
    /// skips the function and becomes its return value.
    FModRet(&'static str),
}

impl Attach {
    /// The program type as `fwctl-guard probe` and the logs name it.
    pub const fn kind(&self) -> &'static str {
        match self {
            Attach::Lsm(_) => "lsm",
            Attach::FExit(_) => "fexit",
            Attach::TracePoint(..) => "tracepoint",
            Attach::KProbe(_) => "kprobe",
            Attach::FModRet(_) => "fmod_ret",
        }
    }
}

/// What a program does with a command (a bit set).
pub mod role {
    /// Decodes the command, applies the policy, counts it and parks it.
    pub const OBSERVE: u8 = 1;
    /// Runs before the driver and can refuse the command.
    pub const DENY: u8 = 2;
    /// Sees the command's result: completes the count and sends the audit event.
    pub const RESULT: u8 = 4;
    /// Compares what reached the driver with what was decided (TOCTOU).
    pub const CHECK: u8 = 8;
}

/// When a program of a set is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always: the set fails without it.
    Required,
    /// Where the kernel has the hook (newer kernels, IA32 emulation): skipped, with the
    /// kernel's reason in the log, where it does not.
    IfSupported,
    /// When the nvme module is loaded (its tracepoints exist).
    NvmeLoaded,
    /// When io_uring commands can be watched on this kernel (their layout was resolved)
    /// and the named program of the set (its io_uring command hook) was attached.
    WithUring(&'static str),
    /// When the kernel has the target function (a module that may not be loaded).
    FunctionPresent,
}

/// One program: its name in the eBPF object (the function name) and how it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub attach: Attach,
    /// [`role`] bits.
    pub role: u8,
    pub when: When,
    /// The oldest kernel with the hook, for `probe` and the documentation (`""`: any the
    /// set runs on).
    pub since: &'static str,
    /// Its `CANARY` map index (`canary::slot`), where it counts the self-test's canaries.
    pub slot: u32,
}

/// One hook set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookSet {
    /// [`id`]: in audit events.
    pub id: u8,
    /// Its name in the configuration (`hook:`), metrics, pins (`<label>-<build>`) and the
    /// audit log.
    pub label: &'static str,
    /// A few words for people.
    pub title: &'static str,
    /// Whether it can refuse a command before the driver runs.
    pub can_deny: bool,
    /// What the kernel must offer, in words.
    pub needs: &'static str,
    /// What every other process pays while it is attached.
    pub cost: &'static str,
    pub programs: &'static [Program],
}

impl HookSet {
    /// The program called `name`, if the set has one.
    pub fn program(&self, name: &str) -> Option<&'static Program> {
        self.programs.iter().find(|p| eq(p.name, name))
    }

    /// The sort key that puts program `i` in attach order: grouped with the programs on
    /// the same function, in table order, except that a deciding `fmod_ret` program
    /// (observe and deny) is attached after its backups. The kernel runs a function's
    /// fmod_ret programs newest first (`bpf_trampoline_link_prog` adds each link at the
    /// head of the list), and the deciding program must run first: a backup counts and
    /// parks a command only when it finds nothing parked for it, and the deciding program
    /// treats what it finds parked as stale.
    pub fn attach_rank(&self, i: usize) -> (usize, bool) {
        let program = &self.programs[i];
        let group = match self.programs.iter().position(|p| p.attach == program.attach) {
            Some(first) => first,
            None => i,
        };
        let deciding_fmod_ret =
            matches!(program.attach, Attach::FModRet(_)) && program.role & role::OBSERVE != 0;
        (group, deciding_fmod_ret)
    }
}

/// BPF LSM: decides before the driver runs; no syscall tracepoint.
pub const LSM: HookSet = HookSet {
    id: id::LSM,
    label: "lsm",
    title: "BPF LSM",
    can_deny: true,
    needs: "BTF, BPF trampolines, and `bpf` in the active LSM list (/sys/kernel/security/lsm)",
    cost: "no syscall tracepoint: only ioctls and io_uring commands pass through the hooks",
    programs: &[
        Program {
            name: "fwctl_lsm_file_ioctl",
            attach: Attach::Lsm("file_ioctl"),
            role: role::OBSERVE | role::DENY,
            when: When::Required,
            since: "",
            slot: slot::LSM_FILE_IOCTL,
        },
        Program {
            name: "fwctl_fexit_sys_ioctl",
            attach: Attach::FExit("__x64_sys_ioctl"),
            role: role::RESULT,
            when: When::Required,
            since: "",
            slot: slot::FEXIT_SYS_IOCTL,
        },
        Program {
            name: "fwctl_lsm_file_ioctl_compat",
            attach: Attach::Lsm("file_ioctl_compat"),
            role: role::OBSERVE | role::DENY,
            when: When::IfSupported,
            since: "6.8",
            slot: slot::LSM_FILE_IOCTL_COMPAT,
        },
        Program {
            name: "fwctl_fexit_compat_sys_ioctl",
            attach: Attach::FExit("__ia32_compat_sys_ioctl"),
            role: role::RESULT,
            when: When::IfSupported,
            since: "",
            slot: slot::FEXIT_COMPAT_SYS_IOCTL,
        },
        Program {
            name: "fwctl_lsm_uring_cmd",
            attach: Attach::Lsm("uring_cmd"),
            role: role::OBSERVE | role::DENY,
            when: When::IfSupported,
            since: "5.19",
            slot: slot::LSM_URING_CMD,
        },
        Program {
            name: "fwctl_io_uring_complete",
            attach: Attach::TracePoint("io_uring", "io_uring_complete"),
            role: role::RESULT,
            when: When::WithUring("fwctl_lsm_uring_cmd"),
            since: "5.19",
            slot: slot::IO_URING_COMPLETE,
        },
    ],
};

/// The trampoline set: fmod_ret programs on the LSM framework's `security_*` functions,
/// for kernels with BPF trampolines where BPF LSM is compiled in but not an active LSM.
/// They decide before the driver runs and can refuse, like BPF LSM; being tracing
/// programs, the kernel may skip one when a task was preempted inside it on the same CPU,
/// so each hook has a deciding program and two independent backup deny programs, and the
/// result programs catch and flag a denied command that all three missed.
pub const TRAMPOLINE: HookSet = HookSet {
    id: id::TRAMPOLINE,
    label: "trampoline",
    title: "BPF trampolines (fmod_ret on security_*)",
    can_deny: true,
    needs: "BTF and BPF trampolines (fentry/fmod_ret); BPF LSM need not be active",
    cost: "no syscall tracepoint: only ioctls and io_uring commands pass through the hooks",
    programs: &[
        Program {
            name: "fwctl_fmodret_file_ioctl",
            attach: Attach::FModRet("security_file_ioctl"),
            role: role::OBSERVE | role::DENY,
            when: When::Required,
            since: "",
            slot: slot::FMODRET_FILE_IOCTL,
        },
        Program {
            name: "fwctl_fmodret_file_ioctl_backup1",
            attach: Attach::FModRet("security_file_ioctl"),
            role: role::DENY,
            when: When::Required,
            since: "",
            slot: slot::FMODRET_FILE_IOCTL_BACKUP[0],
        },
        Program {
            name: "fwctl_fmodret_file_ioctl_backup2",
            attach: Attach::FModRet("security_file_ioctl"),
            role: role::DENY,
            when: When::Required,
            since: "",
            slot: slot::FMODRET_FILE_IOCTL_BACKUP[1],
        },
        Program {
            name: "fwctl_fexit_sys_ioctl_checked",
            attach: Attach::FExit("__x64_sys_ioctl"),
            role: role::RESULT | role::CHECK,
            when: When::Required,
            since: "",
            slot: slot::FEXIT_SYS_IOCTL_CHECKED,
        },
        Program {
            name: "fwctl_fmodret_file_ioctl_compat",
            attach: Attach::FModRet("security_file_ioctl_compat"),
            role: role::OBSERVE | role::DENY,
            when: When::IfSupported,
            since: "6.8",
            slot: slot::FMODRET_FILE_IOCTL_COMPAT,
        },
        Program {
            name: "fwctl_fmodret_file_ioctl_compat_backup1",
            attach: Attach::FModRet("security_file_ioctl_compat"),
            role: role::DENY,
            when: When::IfSupported,
            since: "6.8",
            slot: slot::FMODRET_FILE_IOCTL_COMPAT_BACKUP[0],
        },
        Program {
            name: "fwctl_fmodret_file_ioctl_compat_backup2",
            attach: Attach::FModRet("security_file_ioctl_compat"),
            role: role::DENY,
            when: When::IfSupported,
            since: "6.8",
            slot: slot::FMODRET_FILE_IOCTL_COMPAT_BACKUP[1],
        },
        Program {
            name: "fwctl_fexit_compat_sys_ioctl_checked",
            attach: Attach::FExit("__ia32_compat_sys_ioctl"),
            role: role::RESULT | role::CHECK,
            when: When::IfSupported,
            since: "",
            slot: slot::FEXIT_COMPAT_SYS_IOCTL_CHECKED,
        },
        Program {
            name: "fwctl_fmodret_uring_cmd",
            attach: Attach::FModRet("security_uring_cmd"),
            role: role::OBSERVE | role::DENY,
            when: When::IfSupported,
            since: "5.19",
            slot: slot::FMODRET_URING_CMD,
        },
        Program {
            name: "fwctl_fmodret_uring_cmd_backup1",
            attach: Attach::FModRet("security_uring_cmd"),
            role: role::DENY,
            when: When::IfSupported,
            since: "5.19",
            slot: slot::FMODRET_URING_CMD_BACKUP[0],
        },
        Program {
            name: "fwctl_fmodret_uring_cmd_backup2",
            attach: Attach::FModRet("security_uring_cmd"),
            role: role::DENY,
            when: When::IfSupported,
            since: "5.19",
            slot: slot::FMODRET_URING_CMD_BACKUP[1],
        },
        Program {
            name: "fwctl_io_uring_complete",
            attach: Attach::TracePoint("io_uring", "io_uring_complete"),
            role: role::RESULT,
            when: When::WithUring("fwctl_fmodret_uring_cmd"),
            since: "5.19",
            slot: slot::IO_URING_COMPLETE,
        },
    ],
};

/// Syscall tracepoints: the fallback. Observes only, and every syscall of every task
/// takes the tracing slow path while it is attached.
pub const TRACEPOINT: HookSet = HookSet {
    id: id::TRACEPOINT,
    label: "tracepoint",
    title: "syscall tracepoints",
    can_deny: false,
    needs: "tracefs with syscall events (CONFIG_FTRACE_SYSCALLS)",
    cost: "every syscall of every task takes the tracing slow path",
    programs: &[
        Program {
            name: "fwctl_sys_enter_ioctl",
            attach: Attach::TracePoint("syscalls", "sys_enter_ioctl"),
            role: role::OBSERVE,
            when: When::Required,
            since: "",
            slot: slot::SYS_ENTER_IOCTL,
        },
        Program {
            name: "fwctl_sys_exit_ioctl",
            attach: Attach::TracePoint("syscalls", "sys_exit_ioctl"),
            role: role::RESULT,
            when: When::Required,
            since: "",
            slot: slot::SYS_EXIT_IOCTL,
        },
    ],
};

/// Every hook set, best first: the order `hook: auto` tries them in.
pub const ALL: [&HookSet; 3] = [&LSM, &TRAMPOLINE, &TRACEPOINT];

/// Programs attached beside any hook set where the kernel has their target: the NVMe
/// driver's own tracepoints (mailbox counters and the NVMe TOCTOU check) and the fwctl
/// drivers' `fw_rpc` functions (the fwctl kernel-copy check; kprobes, because these live
/// in modules and aya attaches fentry only to vmlinux functions).
pub const COMPANIONS: [Program; 6] = [
    Program {
        name: "fwctl_nvme_setup_cmd",
        attach: Attach::TracePoint("nvme", "nvme_setup_cmd"),
        role: role::CHECK,
        when: When::NvmeLoaded,
        since: "",
        slot: slot::NONE,
    },
    Program {
        name: "fwctl_nvme_complete_rq",
        attach: Attach::TracePoint("nvme", "nvme_complete_rq"),
        role: role::RESULT,
        when: When::NvmeLoaded,
        since: "",
        slot: slot::NONE,
    },
    Program {
        name: "fwctl_rpc_check_cxl",
        attach: Attach::KProbe("cxlctl_fw_rpc"),
        role: role::CHECK,
        when: When::FunctionPresent,
        since: "6.15",
        slot: slot::NONE,
    },
    Program {
        name: "fwctl_rpc_check_mlx5",
        attach: Attach::KProbe("mlx5ctl_fw_rpc"),
        role: role::CHECK,
        when: When::FunctionPresent,
        since: "6.15",
        slot: slot::NONE,
    },
    Program {
        name: "fwctl_rpc_check_pds",
        attach: Attach::KProbe("pdsfc_fw_rpc"),
        role: role::CHECK,
        when: When::FunctionPresent,
        since: "6.15",
        slot: slot::NONE,
    },
    Program {
        name: "fwctl_rpc_check_bnxt",
        attach: Attach::KProbe("bnxtctl_fw_rpc"),
        role: role::CHECK,
        when: When::FunctionPresent,
        since: "6.15",
        slot: slot::NONE,
    },
];

/// The hook set with this [`id`].
pub fn by_id(id: u8) -> Option<&'static HookSet> {
    ALL.into_iter().find(|s| s.id == id)
}

/// The hook set called `label` (`lsm`, `tracepoint`).
pub fn by_label(label: &str) -> Option<&'static HookSet> {
    ALL.into_iter().find(|s| eq(s.label, label))
}

/// The label of hook set `id`, `unknown` for anything else.
pub fn label(id: u8) -> &'static str {
    match by_id(id) {
        Some(set) => set.label,
        None => "unknown",
    }
}

/// `str` equality usable in this `no_std` crate's const-free helpers.
fn eq(a: &str, b: &str) -> bool {
    a.as_bytes() == b.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deciding_fmod_ret_program_is_attached_last_on_its_function_so_it_runs_first() {
        let mut order: [usize; 13] = core::array::from_fn(|i| i);
        let n = TRAMPOLINE.programs.len();
        assert!(n <= order.len());
        order[..n].sort_by_key(|&i| TRAMPOLINE.attach_rank(i));
        let names: [&str; 13] =
            core::array::from_fn(|k| if k < n { TRAMPOLINE.programs[order[k]].name } else { "" });
        assert_eq!(
            names[..8],
            [
                "fwctl_fmodret_file_ioctl_backup1",
                "fwctl_fmodret_file_ioctl_backup2",
                "fwctl_fmodret_file_ioctl",
                "fwctl_fexit_sys_ioctl_checked",
                "fwctl_fmodret_file_ioctl_compat_backup1",
                "fwctl_fmodret_file_ioctl_compat_backup2",
                "fwctl_fmodret_file_ioctl_compat",
                "fwctl_fexit_compat_sys_ioctl_checked",
            ]
        );
        // The io_uring completion still comes after the uring deciding program it waits for.
        let position = |name: &str| names.iter().position(|n| *n == name).unwrap();
        assert!(position("fwctl_fmodret_uring_cmd") < position("fwctl_io_uring_complete"));
        // Other sets keep their table order.
        for set in [&LSM, &TRACEPOINT] {
            for i in 1..set.programs.len() {
                assert!(set.attach_rank(i - 1) <= set.attach_rank(i), "{}", set.label);
            }
        }
    }

    #[test]
    fn ids_labels_and_names_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            assert_eq!(by_id(a.id), Some(*a));
            assert_eq!(by_label(a.label), Some(*a));
            for b in &ALL[i + 1..] {
                assert_ne!((a.id, a.label), (b.id, b.label));
            }
        }
        // A program may serve several sets (the io_uring completion): same attach, role and
        // slot; only what it waits for may differ.
        let programs = ALL.iter().flat_map(|s| s.programs.iter()).chain(COMPANIONS.iter());
        for (i, a) in programs.clone().enumerate() {
            for b in programs.clone().skip(i + 1).filter(|b| b.name == a.name) {
                assert_eq!(
                    (a.attach, a.role, a.slot),
                    (b.attach, b.role, b.slot),
                    "{} twice, differently",
                    a.name
                );
            }
            for b in programs.clone().filter(|b| b.slot == a.slot && a.slot != crate::canary::slot::NONE) {
                assert_eq!(a.name, b.name, "slot {} twice", a.slot);
            }
            assert!(a.slot == crate::canary::slot::NONE || a.slot < crate::canary::SLOTS);
        }
        for set in ALL {
            for (i, a) in set.programs.iter().enumerate() {
                assert!(
                    set.programs[i + 1..].iter().all(|b| b.name != a.name),
                    "{} twice in {}",
                    a.name,
                    set.label
                );
            }
        }
        assert_eq!(label(0), "unknown");
    }

    #[test]
    fn every_set_observes_and_sees_results_and_only_deniers_deny() {
        for set in ALL {
            let required = |bit| set.programs.iter().any(|p| p.when == When::Required && p.role & bit != 0);
            assert!(required(role::OBSERVE), "{}: no required observer", set.label);
            assert!(required(role::RESULT), "{}: no required result hook", set.label);
            let denies = set.programs.iter().any(|p| p.role & role::DENY != 0);
            assert_eq!(denies, set.can_deny, "{}", set.label);
        }
        assert!(COMPANIONS.iter().all(|p| p.role & role::DENY == 0));
    }

    #[test]
    fn programs_attached_after_another_name_one_of_their_set() {
        for set in ALL {
            for p in set.programs {
                if let When::WithUring(hook) = p.when {
                    assert!(set.program(hook).is_some(), "{}: {hook} not in the set", p.name);
                }
            }
        }
    }

    #[test]
    fn the_auto_order_prefers_a_set_that_denies() {
        assert!(ALL[0].can_deny);
        assert!(!ALL[ALL.len() - 1].can_deny);
    }
}
