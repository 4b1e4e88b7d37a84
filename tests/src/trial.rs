//! Running the suites: each test is a plain function registered in its suite's list, run
//! by libtest-mimic, which prints what libtest prints (`test suite::name ... ok`, and the
//! `test result: ... N passed; M failed; K ignored; ...` line that `cargo xtask` reads) and
//! takes libtest's arguments (filters, `--list`, `--exact`, `--test-threads`, ...).
//!
//! A test returns `Ok(())` when it ran to its end, `Err(Unmet::Ignore(reason))` when this
//! machine cannot run it (printed as `ignored (reason)`, counted as ignored), and
//! `Err(Unmet::Fail(reason))` when something the environment promises is missing; a
//! failed assertion panics, as in any test.
//!
//! Under `FWCTL_GUARD_REQUIRE_VM=1` (the VM guests, where every test must run) a test
//! that would be ignored fails instead.
//!
//! `--suite NAME` (repeatable) runs only those suites; the VM guests run one suite at a
//! time so each prints its own result line. Tests run one at a time unless
//! `--test-threads` says otherwise: they share the kernel.
//!
//! Not for: deciding whether a test can run ([`crate::require`]).

use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::require;

/// Why a test did not run to its end, other than a failed assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// This machine cannot run the test (why).
    Ignore(String),
    /// Something the environment promises is missing (what).
    Fail(String),
}

/// What a test function returns.
pub type TestResult = Result<(), Unmet>;

/// One test: its function and the name it is listed under (the function's name).
pub struct Test {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

/// `tests![a, b]`: the `Test` list of a suite from its functions' names.
#[macro_export]
macro_rules! tests {
    ($($test:ident),* $(,)?) => {
        &[$($crate::trial::Test { name: stringify!($test), run: $test }),*]
    };
}

/// A suite: tests of one feature, in `src/tests/<name>.rs`.
pub struct Suite {
    pub name: &'static str,
    pub tests: &'static [Test],
}

/// The trials of `suites` (all when `only` is empty), suite by suite in the given order,
/// each suite's tests in name order (as libtest orders them), named `suite::test`.
pub fn trials(suites: &[Suite], only: &[String]) -> Vec<Trial> {
    let mut trials = Vec::new();
    for suite in suites.iter().filter(|s| only.is_empty() || only.iter().any(|o| o == s.name)) {
        let mut tests: Vec<&Test> = suite.tests.iter().collect();
        tests.sort_by_key(|t| t.name);
        for test in tests {
            let run = test.run;
            trials.push(Trial::ignorable_test(format!("{}::{}", suite.name, test.name), move || {
                match run() {
                    Ok(()) => Ok(Completion::Completed),
                    Err(Unmet::Ignore(why)) if require::promised(require::REQUIRE_VM) => {
                        Err(Failed::from(format!("cannot run in a VM guest, where every test must: {why}")))
                    }
                    Err(Unmet::Ignore(why)) => Ok(Completion::ignored_with(why)),
                    Err(Unmet::Fail(why)) => Err(Failed::from(why)),
                }
            }));
        }
    }
    trials
}

/// Splits `--suite NAME` / `--suite=NAME` out of the command line: (suites, the rest).
fn split_suites(args: impl IntoIterator<Item = String>) -> Result<(Vec<String>, Vec<String>), String> {
    let (mut suites, mut rest) = (Vec::new(), Vec::new());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--suite" {
            suites.push(args.next().ok_or("--suite needs a suite name")?);
        } else if let Some(name) = arg.strip_prefix("--suite=") {
            suites.push(name.to_string());
        } else {
            rest.push(arg);
        }
    }
    Ok((suites, rest))
}

/// The integration-test executable's `main`: run `suites` with libtest's arguments plus
/// `--suite NAME`.
pub fn main(suites: &[Suite]) -> ExitCode {
    let (only, rest) = match split_suites(std::env::args()) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(unknown) = only.iter().find(|o| !suites.iter().any(|s| s.name == o.as_str())) {
        let names: Vec<_> = suites.iter().map(|s| s.name).collect();
        eprintln!("error: no suite {unknown:?}; the suites are {}", names.join(", "));
        return ExitCode::from(2);
    }
    let mut args = Arguments::from_iter(rest);
    args.test_threads.get_or_insert(1);
    libtest_mimic::run(&args, trials(suites, &only)).exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes() -> TestResult {
        Ok(())
    }
    fn a_first() -> TestResult {
        Ok(())
    }
    fn cannot_run() -> TestResult {
        Err(Unmet::Ignore("no device here".into()))
    }

    const SUITES: &[Suite] = &[
        Suite { name: "one", tests: tests![passes, a_first] },
        Suite { name: "two", tests: tests![cannot_run] },
    ];

    fn names(trials: &[Trial]) -> Vec<&str> {
        trials.iter().map(Trial::name).collect()
    }

    #[test]
    fn trials_are_named_by_suite_in_suite_order_and_name_order_within() {
        assert_eq!(names(&trials(SUITES, &[])), ["one::a_first", "one::passes", "two::cannot_run"]);
        assert_eq!(names(&trials(SUITES, &["two".into()])), ["two::cannot_run"]);
    }

    #[test]
    fn suite_options_are_taken_out_of_libtests_arguments() {
        let args = ["exe", "--suite", "vm", "--test-threads=1", "--suite=host", "filter"].map(String::from);
        let (suites, rest) = split_suites(args).unwrap();
        assert_eq!(suites, ["vm", "host"]);
        assert_eq!(rest, ["exe", "--test-threads=1", "filter"]);
        assert!(split_suites(["exe", "--suite"].map(String::from)).is_err());
    }

    #[test]
    fn an_ignored_test_is_counted_as_ignored_not_passed_and_says_why() {
        // The report goes to a file: a second `test result:` line on this test's stdout
        // would be counted by whoever reads the run's output.
        let log = std::env::temp_dir().join(format!("fwctl-guard-trial-{}.log", std::process::id()));
        let args = Arguments {
            test_threads: Some(1),
            logfile: Some(log.display().to_string()),
            ..Arguments::default()
        };
        let conclusion = libtest_mimic::run(&args, trials(SUITES, &[]));
        let report = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        assert_eq!((conclusion.num_passed, conclusion.num_ignored, conclusion.num_failed), (2, 1, 0));
        let line =
            report.lines().find(|l| l.contains("two::cannot_run")).unwrap_or_else(|| panic!("{report}"));
        assert!(line.contains("ignored") && line.contains("(no device here)"), "{line}");
        assert!(report.contains("2 passed; 0 failed; 1 ignored"), "{report}");
    }
}
