//! The integration-test executable (`cargo test -p fwctl-guard-tests`, or built once by
//! `cargo xtask vm-test` and run inside the guests as `/tests/integration --suite NAME`):
//! every suite of `tests/` in one program, run by the harness's [`trial::main`].
//!
//! [`trial::main`]: fwctl_guard_tests::trial::main

mod tests;

fn main() -> std::process::ExitCode {
    fwctl_guard_tests::trial::main(tests::SUITES)
}
