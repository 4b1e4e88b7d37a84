//! `cargo xtask test`: the whole suite (what CI runs), step by step, stopping at the
//! first failure, then a summary of every step that ran: its time, and for the test steps
//! how many tests passed, failed and were ignored (per VM boot for the VM stage).
//! Privileged integration tests run serially: they share the kernel.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::tally::{Counts, Tally};
use crate::{build, cmd, paths, privilege, setup};

/// Runs every step with a header and its elapsed time, then the summary.
pub fn test() -> Result<()> {
    let start = Instant::now();
    let mut steps = Steps::default();
    let result = run_steps(&mut steps);
    steps.print_summary(start.elapsed());
    result
}

/// The steps in order; stops at the first failure.
fn run_steps(steps: &mut Steps) -> Result<()> {
    let root = paths::workspace_root();
    let agent = paths::binary(build::AGENT, true);
    let privileged = privilege::is_root();

    // Both test steps get the agent's path; as root, privileged tests must not skip.
    let cargo_test = || {
        let mut c = cmd::cargo();
        c.current_dir(&root).env("FWCTL_GUARD_BIN", &agent).arg("test");
        if privileged {
            c.env("FWCTL_GUARD_REQUIRE_PRIVILEGED", "1");
        }
        c
    };
    let cargo = |args: &[&str]| {
        let mut c = cmd::cargo();
        c.current_dir(&root).args(args);
        c
    };

    steps.step("setup", setup::setup)?;
    steps.step("format", || cmd::run(&mut cargo(&["fmt", "--all", "--", "--check"])))?;
    // The eBPF crate only builds for the BPF target with nightly (core intrinsics,
    // build-std), so it gets its own clippy run; on the host it would pull in std.
    steps.step("clippy", || {
        cmd::run(&mut cargo(&[
            "clippy",
            "--workspace",
            "--exclude",
            "fwctl-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.step("clippy (eBPF)", || {
        let mut c = std::process::Command::new("rustup");
        c.current_dir(root.join("fwctl-ebpf")).args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]);
        cmd::run(&mut c)
    })?;
    steps.step("build agent", || build::build_agent(true).map(drop))?;
    // The integration tests' packaging suite (tests/src/tests/packaging.rs) installs the
    // .deb this builds.
    steps.step("Debian package", || crate::package::build_package().map(drop))?;
    // fwctl-ebpf is excluded: it is a no_main bpfel program (aya-build builds it for
    // BPF; its logic lives in fwctl-common, which is tested here).
    // The module-cycle check (xtask/src/cycles.rs) is one of xtask's unit tests.
    steps.counted("unit tests", |tallies| {
        counted(
            tallies,
            "unit tests",
            cargo_test().args([
                "--workspace",
                "--release",
                "--exclude",
                "fwctl-guard-tests",
                "--exclude",
                "fwctl-ebpf",
            ]),
        )
    })?;
    steps.counted("integration tests", |tallies| {
        counted(
            tallies,
            "integration tests",
            cargo_test().args([
                "-p",
                "fwctl-guard-tests",
                "--release",
                "--",
                "--test-threads=1",
                "--nocapture",
            ]),
        )
    })?;
    // The enforcing path (BPF LSM + fexit) and real NVMe/CXL/fwctl devices exist only in
    // the guests: one boot per kernel of the matrix, every in-guest test in that boot. The
    // fwctl test kernel is built on the first run (~25 min on 2 cores) and cached.
    steps.counted("VM tests (Debian 6.1, 6.12, 7.2 and the fwctl test kernel in QEMU, each with and without BPF LSM active)", |tallies| {
        crate::vm::vm_test_counted(&crate::vm::Args::for_suite(), tallies)
    })
}

/// Runs a test command with its output streamed, and adds its counts as `stage`.
fn counted(tallies: &mut Vec<Tally>, stage: &str, command: &mut std::process::Command) -> Result<()> {
    let mut counts = Counts::default();
    let result = cmd::run_tee(command, |line| {
        if let Some(c) = Counts::from_line(line) {
            counts.add(c);
        }
    });
    tallies.push(Tally { stage: stage.to_string(), counts });
    result
}

/// What ran: per step its name, verdict, time and test counts.
#[derive(Default)]
struct Steps {
    done: Vec<Step>,
}

struct Step {
    name: String,
    ok: bool,
    elapsed: Duration,
    tallies: Vec<Tally>,
}

impl Steps {
    /// A step without test counts.
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        self.counted(name, |_| f())
    }

    /// Prints a header, runs `f` (which adds its stages' counts), and prints how long it
    /// took, whether it passed and what it counted.
    fn counted(&mut self, name: &str, f: impl FnOnce(&mut Vec<Tally>) -> Result<()>) -> Result<()> {
        println!("\n== {name} ==");
        let start = Instant::now();
        let mut tallies = Vec::new();
        let result = f(&mut tallies);
        let step = Step { name: name.to_string(), ok: result.is_ok(), elapsed: start.elapsed(), tallies };
        println!(
            "== {name}: {} in {:.1?}{} ==",
            verdict(step.ok),
            step.elapsed,
            counts_suffix(&step.tallies)
        );
        self.done.push(step);
        result
    }

    /// `== all steps ==`: one line per step, one more per counted stage, and the total.
    fn print_summary(&self, elapsed: Duration) {
        print!("{}", self.summary(elapsed));
    }

    fn summary(&self, elapsed: Duration) -> String {
        let all_ok = self.done.iter().all(|s| s.ok);
        let outcome = if all_ok { "passed" } else { "stopped at a failure" };
        let mut text = format!("\n== all steps ({outcome}, {elapsed:.1?}) ==\n");
        let mut total = Counts::default();
        for step in &self.done {
            text +=
                &format!("  {:<6} {:>8}  {}\n", verdict(step.ok), format!("{:.1?}", step.elapsed), step.name);
            if let [only] = step.tallies.as_slice() {
                text += &format!("  {:<6} {:>8}    {}\n", "", "", only.counts);
            } else {
                for t in &step.tallies {
                    text += &format!("  {:<6} {:>8}    {}: {}\n", "", "", t.stage, t.counts);
                }
            }
            for t in &step.tallies {
                total.add(t.counts);
            }
        }
        text += &format!("total: {total}\n");
        text
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAILED"
    }
}

/// `; 12 passed, 0 failed, 1 ignored` summed over the step's stages, or nothing.
fn counts_suffix(tallies: &[Tally]) -> String {
    if tallies.is_empty() {
        return String::new();
    }
    let mut sum = Counts::default();
    tallies.iter().for_each(|t| sum.add(t.counts));
    format!("; {sum}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(stage: &str, passed: u64, failed: u64, ignored: u64) -> Tally {
        Tally { stage: stage.to_string(), counts: Counts { passed, failed, ignored, runs: 1 } }
    }

    #[test]
    fn summary_lists_steps_stages_and_the_total() {
        let steps = Steps {
            done: vec![
                Step {
                    name: "format".into(),
                    ok: true,
                    elapsed: Duration::from_millis(1500),
                    tallies: vec![],
                },
                Step {
                    name: "unit tests".into(),
                    ok: true,
                    elapsed: Duration::from_secs(49),
                    tallies: vec![tally("unit tests", 300, 0, 2)],
                },
                Step {
                    name: "VM tests".into(),
                    ok: false,
                    elapsed: Duration::from_secs(600),
                    tallies: vec![tally("VM 6.1 default", 90, 0, 0), tally("VM 7.2 ubuntu", 70, 12, 1)],
                },
            ],
        };
        let text = steps.summary(Duration::from_secs(700));
        let expected = "
== all steps (stopped at a failure, 700.0s) ==
  ok         1.5s  format
  ok        49.0s  unit tests
                     300 passed, 0 failed, 2 ignored
  FAILED   600.0s  VM tests
                     VM 6.1 default: 90 passed, 0 failed, 0 ignored
                     VM 7.2 ubuntu: 70 passed, 12 failed, 1 ignored
total: 460 passed, 12 failed, 3 ignored
";
        assert_eq!(text, expected);
        assert_eq!(counts_suffix(&steps.done[2].tallies), "; 160 passed, 12 failed, 1 ignored");
        assert_eq!(counts_suffix(&[]), "");
    }
}
