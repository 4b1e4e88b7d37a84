//! `cargo xtask vm-test`: boots kernels in QEMU (TCG on the project's machines) and runs
//! the in-guest test script `vm/guest-tests.sh` once per kernel and LSM world: stock
//! Debian kernels with an emulated NVMe controller and CXL type-3 device, and the fwctl
//! test kernel, built here, with the kernel's cxl_test mock providing real fwctl devices;
//! each with its default LSM list (BPF LSM active) and/or Ubuntu's (BPF LSM not active).
//!
//! Steps: host packages ([`host`]), agent build, kernel fetch or build and cache
//! ([`kernel`]: Debian's packages or the fwctl build, one cache), initramfs ([`initramfs`]),
//! boot and result ([`qemu`]). What differs per kernel (modules, devices, machine layout,
//! tests) is its [`bed`]; what differs per LSM configuration is its [`world`]. The guest's
//! `vm/init.sh` mounts the kernel file systems, loads the modules, waits for the bed's
//! devices, runs the tests and prints `FWCTL_GUARD_VM_RESULT=<code>`.
//!
//! Where things are: kernels in `~/.cache/fwctl-guard/vm/kernels/`, device backing files
//! in `target/vm/disks/`, initramfs in `target/vm/<kernel>-<world>/`, serial console logs in
//! `target/vm-logs/<kernel>-<world>.log`.

mod apt;
mod bed;
mod host;
mod initramfs;
mod kernel;
mod qemu;
mod world;

use std::collections::VecDeque;
use std::fs;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::tally::{Counts, Tally};
use crate::{build, cmd, paths, setup};
use kernel::Series;
use qemu::Accel;
use world::{parse_worlds, World, Worlds};

/// Boots at once. Under TCG a guest keeps about one of the 2 cores busy for most of its
/// boot (the suites run one test at a time; agent start-up is the verifier on one CPU), so
/// two guests side by side take little more than one; on a cold cache the fwctl kernel
/// builds in one slot while the other boots the stock kernels. Each slot has its own
/// device backing files.
const PARALLEL_BOOTS: usize = 2;

/// Lines of console shown when a guest fails.
const TAIL_LINES: usize = 200;

/// The LSM worlds `cargo xtask test` boots every kernel in (`default`, `ubuntu` or `both`).
/// `both`: every suite runs on BPF LSM and on the trampoline set (issue 14).
const SUITE_LSM_WORLDS: &str = "both";

/// What `cargo xtask test` runs in the `ubuntu` world (BPF LSM not active: the
/// trampoline set), per kernel; the `default` world runs every suite of the bed. Every
/// suite on both worlds on all four kernels takes about twice the CI budget under TCG on
/// 2 cores (agent start-up verifies 15 programs), so: the deny path (policy) and every
/// attack row, recursion floods included, on every kernel; on 7.2 (PREEMPT_LAZY, where the
/// kernel skips tracing programs most) also counting exactness and hook choice (host),
/// every hook set against the controller (vm), and kill -9 adoption (fleet).
/// `cargo xtask vm-test --lsm ubuntu` runs them all.
const SUITE_UBUNTU_PLAN: &[(Series, &[&str])] = &[
    (Series::V6_1, &["policy", "attacks"]),
    (Series::V6_12, &["policy", "attacks"]),
    (Series::V7_2, &["host", "policy", "vm", "attacks", "fleet"]),
    (Series::Fwctl, &["policy", "attacks"]),
];

/// The kernels `--kernel` selects: one series of the matrix, or `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernels(Vec<Series>);

fn parse_kernels(text: &str) -> Result<Kernels, String> {
    if text == "all" {
        return Ok(Kernels(Series::ALL.to_vec()));
    }
    <Series as clap::ValueEnum>::from_str(text, false)
        .map(|s| Kernels(vec![s]))
        .map_err(|_| format!("unknown kernel '{text}': one of 6.1, 6.12, 7.2, fwctl, all"))
}

/// Options of `cargo xtask vm-test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kernel to boot: Debian's bookworm 6.1, trixie 6.12, sid 7.2, the fwctl test kernel
    /// (built from Debian's 7.2 source on first use, ~25 min, then cached), or all four.
    #[arg(long, value_parser = parse_kernels, default_value = "7.2")]
    kernel: Kernels,
    /// LSM world: `default` (the kernel's own LSM list, BPF LSM active), `ubuntu`
    /// (`lsm=landlock,lockdown,yama,integrity,apparmor` appended: BPF LSM not active), or
    /// `both` (each kernel boots once in each).
    #[arg(long = "lsm", value_parser = parse_worlds, default_value = "default")]
    worlds: Worlds,
    /// Keep the unpacked initramfs tree (target/vm/<kernel>-<world>/root) for inspection.
    #[arg(long)]
    keep: bool,
    /// Time limit per boot, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// QEMU accelerator: auto tries KVM only where the CPU can nest and falls back to TCG.
    #[arg(long, value_enum, default_value = "auto")]
    accel: Accel,
    /// Run only the suites of [`SUITE_UBUNTU_PLAN`] in the `ubuntu` world (`cargo xtask
    /// test`); `vm-test` runs every suite of the bed in every world.
    #[arg(skip)]
    ubuntu_plan: bool,
}

impl Args {
    /// The options `cargo xtask test` uses: every kernel of the matrix in the
    /// [`SUITE_LSM_WORLDS`], a wide time limit.
    pub fn for_suite() -> Self {
        Self {
            kernel: Kernels(Series::ALL.to_vec()),
            worlds: parse_worlds(SUITE_LSM_WORLDS).expect("SUITE_LSM_WORLDS is a valid --lsm value"),
            keep: false,
            timeout: 1800,
            accel: Accel::Auto,
            ubuntu_plan: true,
        }
    }

    /// The suites `boot` runs: every suite of its bed, except in the `ubuntu` world under
    /// [`SUITE_UBUNTU_PLAN`].
    fn suites(&self, boot: Boot) -> Vec<&'static str> {
        let bed = boot.series.bed();
        if !self.ubuntu_plan || boot.world != World::Ubuntu {
            return bed.tests.to_vec();
        }
        let plan = SUITE_UBUNTU_PLAN.iter().find(|(s, _)| *s == boot.series).map_or(&[][..], |(_, p)| p);
        bed.tests.iter().copied().filter(|t| plan.contains(t)).collect()
    }
}

/// One boot: a kernel in an LSM world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Boot {
    series: Series,
    world: World,
}

impl Boot {
    /// `7.2-ubuntu`: the log's and the work folder's name.
    fn name(self) -> String {
        format!("{}-{}", self.series.name(), self.world.name())
    }

    /// `7.2 ubuntu`, for progress lines and summaries.
    fn label(self) -> String {
        format!("{} {}", self.series.name(), self.world.name())
    }
}

/// One boot's result for the summary.
struct Report {
    boot: Boot,
    ok: bool,
    counts: Counts,
    /// Test executables the bed runs (each should print one closing line).
    expected_runs: u64,
    line: String,
}

/// `cargo xtask vm-test`.
pub fn vm_test(args: &Args) -> Result<()> {
    vm_test_counted(args, &mut Vec::new())
}

/// `cargo xtask vm-test`, adding each boot's test counts to `tallies` (stage `VM <kernel>
/// <world>`), also when a boot fails.
pub fn vm_test_counted(args: &Args, tallies: &mut Vec<Tally>) -> Result<()> {
    let start = Instant::now();
    let series = args.kernel.0.clone();
    let boots: Vec<Boot> = series
        .iter()
        .flat_map(|&series| args.worlds.0.iter().map(move |&world| Boot { series, world }))
        .collect();
    setup::setup()?;
    host::ensure()?;
    let payload = initramfs::Payload { agent: build::build_agent(true)?, tests: build::test_executable()? };
    let accel = match args.accel {
        Accel::Auto if qemu::kvm_plausible() => Accel::Auto,
        Accel::Auto => Accel::Tcg,
        other => other,
    };
    let parallel = PARALLEL_BOOTS.min(boots.len()).max(1);
    let disks: Vec<qemu::Disks> = (0..parallel).map(qemu::disks).collect::<Result<_>>()?;
    println!(
        "vm: ready in {:.1?}; accelerator: {}; {} boots, {parallel} at a time",
        start.elapsed(),
        accel.name(),
        boots.len()
    );

    // The fwctl kernel first: on a cold cache it builds (~25 min, nice 10) while the other
    // slot boots the stock kernels.
    let mut queue: VecDeque<(usize, Boot)> = boots.iter().copied().enumerate().collect();
    queue
        .make_contiguous()
        .sort_by_key(|(i, b)| (b.series != Series::Fwctl || b.world != World::Default, *i));
    let queue = Mutex::new(queue);
    let accel = Mutex::new(accel);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for disks in &disks {
            scope.spawn(|| loop {
                let Some((i, boot)) = queue.lock().unwrap().pop_front() else { break };
                let mut this_accel = *accel.lock().unwrap();
                let report = match run_one(boot, args, &payload, disks, &mut this_accel) {
                    Ok(report) => report,
                    Err(err) => Report {
                        boot,
                        ok: false,
                        counts: Counts::default(),
                        expected_runs: args.suites(boot).len() as u64,
                        line: format!("error: {err:#}"),
                    },
                };
                // A KVM guest that never reached init means TCG for every later boot.
                if this_accel == Accel::Tcg {
                    *accel.lock().unwrap() = Accel::Tcg;
                }
                done.lock().unwrap().push((i, report));
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _)| *i);
    let reports: Vec<Report> = done.into_iter().map(|(_, r)| r).collect();
    for report in &reports {
        tallies.push(Tally { stage: format!("VM {}", report.boot.label()), counts: report.counts });
    }
    println!("\nvm-test summary ({:.0?} in all):", start.elapsed());
    for r in &reports {
        let missing = if r.counts.runs < r.expected_runs {
            format!(" (only {} of {} test executables reported)", r.counts.runs, r.expected_runs)
        } else {
            String::new()
        };
        println!(
            "  {:<5} {:<7} {} {}{missing}; {}",
            r.boot.series.name(),
            r.boot.world.name(),
            if r.ok { "PASS" } else { "FAIL" },
            r.counts,
            r.line
        );
    }
    let failed: Vec<String> = reports.iter().filter(|r| !r.ok).map(|r| r.boot.label()).collect();
    if !failed.is_empty() {
        bail!("vm-test failed on {}", failed.join(", "));
    }
    Ok(())
}

/// Fetch, pack and boot one kernel in one world.
fn run_one(
    boot: Boot,
    args: &Args,
    payload: &initramfs::Payload,
    disks: &qemu::Disks,
    accel: &mut Accel,
) -> Result<Report> {
    let Boot { series, world } = boot;
    let label = boot.label();
    let t = Instant::now();
    let kernel = kernel::ensure(series)?;
    let fetch = t.elapsed();
    let t = Instant::now();
    let work = paths::target_dir().join("vm").join(boot.name());
    let bed = series.bed();
    let suites = args.suites(boot);
    let initrd = initramfs::build(&kernel, bed, world, &suites, payload, &work)?;
    let pack = t.elapsed();
    let log = paths::target_dir().join("vm-logs").join(format!("{}.log", boot.name()));
    let timeout = Duration::from_secs(args.timeout);
    let qemu_for =
        |accel| qemu::command(&kernel.vmlinuz, &initrd, disks, bed.layout, accel, world.kernel_args());

    let mut outcome = None;
    if *accel == Accel::Auto {
        let cmd = qemu_for(Accel::Kvm);
        println!("$ {}", cmd::display(&cmd));
        let out = qemu::boot(cmd, &log, timeout, Some(qemu::KVM_INIT_DEADLINE))?;
        if out.init_seen {
            outcome = Some(out);
        } else {
            println!("vm: KVM guest did not reach init ({}); using TCG from now on", why(&out));
            *accel = Accel::Tcg;
        }
    }
    let outcome = match outcome {
        Some(out) => out,
        None => {
            let cmd = qemu_for(*accel);
            println!("$ {}", cmd::display(&cmd));
            qemu::boot(cmd, &log, timeout, None)?
        }
    };
    if !args.keep {
        fs::remove_dir_all(work.join("root")).ok();
    }

    let times = format!(
        "{} (kernel {:.1?}, initramfs {:.1?}, boot+tests {:.1?}; log {})",
        kernel.release,
        fetch,
        pack,
        outcome.elapsed,
        log.display()
    );
    let ok = outcome.result == Some(0);
    if ok {
        println!("vm: {label}: guest output:");
        for line in guest_section(&outcome.lines) {
            println!("  | {line}");
        }
    } else {
        let from = outcome.lines.len().saturating_sub(TAIL_LINES);
        println!("vm: {label} FAILED ({}); last {} console lines:", why(&outcome), TAIL_LINES);
        for line in &outcome.lines[from..] {
            println!("  | {line}");
        }
    }
    let counts = Counts::from_lines(guest_section(&outcome.lines).iter().map(String::as_str));
    println!("vm: {label}: {counts}; {times}");
    Ok(Report { boot, ok, counts, expected_runs: suites.len() as u64, line: times })
}

/// The console from init's start mark to the result line.
fn guest_section(lines: &[String]) -> &[String] {
    let begin = lines.iter().position(|l| l.contains(qemu::INIT_MARK)).unwrap_or(0);
    let end = lines.iter().rposition(|l| l.contains(qemu::RESULT_MARK)).map_or(lines.len(), |i| i + 1);
    &lines[begin..end.max(begin)]
}

/// A few words on how a boot ended.
fn why(out: &qemu::Outcome) -> String {
    match (&out.killed, out.result, out.qemu_status) {
        (Some(reason), _, _) => reason.clone(),
        (None, Some(code), _) => format!("guest tests exited with {code}"),
        (None, None, Some(status)) => format!("QEMU exited ({status}) without a result line"),
        (None, None, None) => "no result line".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn lsm_choices() {
        let parse = |a: &[&str]| Cli::try_parse_from([&["vm-test"], a].concat()).map(|c| c.args.worlds.0);
        assert_eq!(parse(&[]).unwrap(), vec![World::Default]);
        assert_eq!(parse(&["--lsm", "ubuntu"]).unwrap(), vec![World::Ubuntu]);
        assert_eq!(parse(&["--lsm", "both"]).unwrap(), World::ALL.to_vec());
        assert!(parse(&["--lsm", "smack"]).is_err());
    }

    #[test]
    fn the_ci_plan_runs_the_deny_path_and_the_attacks_on_the_trampoline_set_of_every_kernel() {
        let args = Args::for_suite();
        for &series in &Series::ALL {
            let bed = series.bed();
            assert_eq!(args.suites(Boot { series, world: World::Default }), bed.tests.to_vec());
            let ubuntu = args.suites(Boot { series, world: World::Ubuntu });
            for suite in ["policy", "attacks"] {
                assert!(ubuntu.contains(&suite), "{suite} on {}", series.name());
            }
            let (_, plan) = SUITE_UBUNTU_PLAN.iter().find(|(s, _)| *s == series).unwrap();
            assert_eq!(ubuntu.len(), plan.len(), "every planned suite exists in the {} bed", series.name());
        }
    }

    #[test]
    fn the_suite_boots_every_kernel_in_its_worlds() {
        let args = Args::for_suite();
        assert_eq!(args.kernel.0, Series::ALL.to_vec());
        assert_eq!(args.worlds, parse_worlds(SUITE_LSM_WORLDS).unwrap());
    }

    #[test]
    fn boots_are_named_by_kernel_and_world() {
        let boot = Boot { series: Series::V7_2, world: World::Ubuntu };
        assert_eq!(boot.name(), "7.2-ubuntu");
        assert_eq!(boot.label(), "7.2 ubuntu");
    }

    #[test]
    fn kernel_choices() {
        let parse = |a: &[&str]| Cli::try_parse_from([&["vm-test"], a].concat()).map(|c| c.args.kernel.0);
        assert_eq!(parse(&[]).unwrap(), vec![Series::V7_2]);
        assert_eq!(parse(&["--kernel", "6.1"]).unwrap(), vec![Series::V6_1]);
        assert_eq!(parse(&["--kernel", "fwctl"]).unwrap(), vec![Series::Fwctl]);
        assert_eq!(parse(&["--kernel", "all"]).unwrap(), Series::ALL.to_vec());
        assert!(parse(&["--kernel", "8.0"]).is_err());
    }
}
