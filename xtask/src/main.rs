//! fwctl-guard's task runner (`cargo xtask <command>`): machine setup, build, run,
//! the test suite and the benchmark. Each command lives in its own module.

mod bench;
mod build;
mod cmd;
#[cfg(test)]
mod cycles;
mod package;
mod paths;
mod privilege;
mod run;
mod setup;
mod suite;
mod tally;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "fwctl-guard's build, test and run tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Make this machine ready: nightly + rust-src, bpf-linker, mounts, Debian packages.
    Setup,
    /// Setup, then build the agent (release unless --debug).
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Setup, build, then run the agent with config/fwctl-guard.yaml.
    Run {
        /// Extra arguments for `fwctl-guard run`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The whole suite: setup, fmt, clippy, build, unit and integration tests.
    Test,
    /// Setup, build the agent and the bench binary, then run the bench.
    Bench {
        /// Extra arguments for `fwctl-guard-bench`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, release build, then the Debian package (target/debian/fwctl-guard_VERSION_ARCH.deb).
    Package,
    /// Boot Debian kernels in QEMU with emulated NVMe and CXL devices; run the in-guest tests.
    VmTest(vm::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::setup(),
        Task::Build { debug } => build::build(!debug),
        Task::Run { args } => run::run(&args),
        Task::Test => suite::test(),
        Task::Bench { args } => bench::bench(&args),
        Task::Package => package::package(),
        Task::VmTest(args) => vm::vm_test(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            // A failed command's own exit code, else 1.
            let code = err.downcast_ref::<cmd::Failed>().map_or(1, |f| f.code);
            ExitCode::from(u8::try_from(code).unwrap_or(1).max(1))
        }
    }
}
