//! Test counts for the summaries of `cargo xtask test` and `vm-test`: read from libtest's
//! closing line of each test executable (`test result: ok. 12 passed; 0 failed; 1 ignored;
//! 0 measured; 0 filtered out; finished in 0.01s`), which libtest-mimic harnesses print
//! the same way, and summed per stage (unit tests, integration tests, one VM boot).
//!
//! Not here: running the tests (`cmd::run_tee` streams a command's output and hands each
//! line over; the VM boots collect the guest console).

use std::fmt;

/// What one stage's test executables reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    /// How many closing lines were read: one per test executable (and doc-test run).
    pub runs: u64,
}

impl Counts {
    /// The counts of one closing line, `None` for any other line. The line may carry a
    /// prefix (a console's `  | `).
    pub fn from_line(line: &str) -> Option<Counts> {
        let rest = &line[line.find("test result: ")? + "test result: ".len()..];
        let (_verdict, fields) = rest.split_once(". ")?;
        let mut counts = Counts { runs: 1, ..Counts::default() };
        let mut seen = 0;
        for field in fields.split(';') {
            let mut words = field.split_whitespace();
            let (Some(number), Some(what)) = (words.next(), words.next()) else { continue };
            let Ok(n) = number.parse::<u64>() else { continue };
            match what {
                "passed" => counts.passed = n,
                "failed" => counts.failed = n,
                "ignored" => counts.ignored = n,
                _ => continue,
            }
            seen += 1;
        }
        (seen == 3).then_some(counts)
    }

    /// The sum of every closing line among `lines`.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Counts {
        let mut sum = Counts::default();
        for counts in lines.into_iter().filter_map(Counts::from_line) {
            sum.add(counts);
        }
        sum
    }

    pub fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
        self.runs += other.runs;
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed, {} ignored", self.passed, self.failed, self.ignored)
    }
}

/// One stage's counts, named for the summary (`unit tests`, `VM 7.2 default`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub stage: String,
    pub counts: Counts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_lines_are_parsed() {
        let ok =
            "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 1 filtered out; finished in 0.05s";
        assert_eq!(Counts::from_line(ok), Some(Counts { passed: 12, failed: 0, ignored: 3, runs: 1 }));
        let failed = "test result: FAILED. 40 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 91.20s";
        assert_eq!(Counts::from_line(failed), Some(Counts { passed: 40, failed: 2, ignored: 0, runs: 1 }));
        // The guest console as vm-test shows it, and a line a test printed before it.
        let console =
            "  | [  12.3] test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out";
        assert_eq!(Counts::from_line(console), Some(Counts { passed: 7, failed: 0, ignored: 1, runs: 1 }));
    }

    #[test]
    fn other_lines_are_not_counted() {
        for line in [
            "",
            "running 12 tests",
            "test policy::decide ... ok",
            "test result: ok.",
            "test result: ok. many passed; 0 failed; 0 ignored",
            "test result: ok. 3 passed; 0 failed",
            "the test result: was fine",
        ] {
            assert_eq!(Counts::from_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn stages_sum_their_runs() {
        let output = "\
running 2 tests
test a ... ok
test b ... ignored, needs root

test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests fwctl_common

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

test result: FAILED. 5 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s
";
        let sum = Counts::from_lines(output.lines());
        assert_eq!(sum, Counts { passed: 6, failed: 1, ignored: 1, runs: 3 });
        assert_eq!(sum.to_string(), "6 passed, 1 failed, 1 ignored");
    }
}
