//! The `fwctl-guard` command line: argument parsing here, one file per subcommand
//! (`run` is the agent itself, in `agent`).

pub mod devices;
pub mod policy;
pub mod probe;
pub mod uninstall;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{agent, config::HookMode};
use policy::explain;

/// Audit device passthrough commands (fwctl, NVMe, CXL mailbox, SG_IO) in the kernel.
#[derive(Parser)]
#[command(name = "fwctl-guard", version, about)]
struct Cli {
    /// More log output (repeat for debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the programs, count and audit every passthrough command, serve metrics.
    Run {
        /// Agent configuration (YAML).
        #[arg(long, default_value = "/etc/fwctl-guard/config.yaml")]
        config: PathBuf,
        /// Write the audit log here instead of the configured path (`-` = stdout).
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// Also watch this device node: `PATH=CLASS[:DRIVER]`, e.g. `/dev/fwctl/fwctl0=fwctl:mlx5`
        /// (same as a `devices:` entry in the configuration; repeatable).
        #[arg(long = "device", value_name = "PATH=CLASS[:DRIVER]")]
        devices: Vec<String>,
        /// Kernel hooks: auto (the best set that attaches and proves to run: lsm, then
        /// trampoline, then tracepoint), or one of them. Overrides `hook` in the configuration.
        #[arg(long, value_enum)]
        hook: Option<HookMode>,
        /// Policy file; overrides `policy` in the configuration.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Run an enforce-mode policy even where it cannot be enforced (no BPF LSM):
        /// deny verdicts are recorded as would_deny and fwctl_guard_enforcing is 0.
        #[arg(long)]
        allow_audit_only: bool,
        /// Pin root on bpffs; overrides `pin_path` in the configuration.
        #[arg(long, value_name = "DIR")]
        pin_path: Option<PathBuf>,
        /// On exit, remove the pinned programs, links and maps (detach everything) instead
        /// of leaving them enforcing and counting for the next agent.
        #[arg(long)]
        cleanup: bool,
    },
    /// Remove the pinned programs, links and maps: stops all enforcement and counting in
    /// the kernel. Refused while an agent runs with that pin root (stop it first).
    Uninstall {
        /// Agent configuration (YAML), for its `pin_path`.
        #[arg(long, default_value = "/etc/fwctl-guard/config.yaml")]
        config: PathBuf,
        /// Pin root; overrides the configuration (which then need not exist).
        #[arg(long, value_name = "DIR")]
        pin_path: Option<PathBuf>,
    },
    /// Print which hooks and program types this kernel accepts, and the passthrough devices.
    Probe {
        /// JSON with stable keys instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the passthrough devices; with --effects, what each declares about its commands
    /// (NVMe effects log, CXL Command Effects Log, CXL feature effects), read from the
    /// device (needs root; the agent need not run).
    Devices {
        /// Read and print each device's declared opcodes and their effects.
        #[arg(long)]
        effects: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Work with policy files (validate them before deploying).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files: exit 0 when all are valid (warnings allowed), 1 with every
    /// error (FILE:LINE:COL: what and why) otherwise. A directory is one policy: its
    /// *.yaml files merged in lexical order, as the agent loads it.
    Check {
        /// Policy files or directories.
        #[arg(required = true, value_name = "FILE_OR_DIR")]
        files: Vec<PathBuf>,
        /// text, or json for pipelines.
        #[arg(long, value_enum, default_value = "text")]
        format: policy::check::Format,
    },
    /// Print the verdict and the deciding rule for one command, evaluated exactly as the
    /// kernel does, e.g. `--class nvme-admin --opcode sanitize --uid 0 --comm nvme`.
    Explain {
        file: PathBuf,
        #[command(flatten)]
        probe: explain::Probe,
    },
    /// Print the JSON Schema of a policy file (the committed policies/schema.json), for
    /// editors and CI linters.
    Schema,
    /// Print which commands (class/driver/opcode/scope) change verdict from OLD to NEW,
    /// for one subject (uid/gid/comm options; default uid 0, no comm). Exit 0 either way.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, default_value_t = 0)]
        uid: u32,
        #[arg(long, default_value_t = 0)]
        gid: u32,
        #[arg(long, default_value = "")]
        comm: String,
    },
}

/// `fwctl-guard policy ...`: its own exit status (1 = a policy is invalid).
fn policy_command(command: PolicyCommand) -> std::process::ExitCode {
    match command {
        PolicyCommand::Check { files, format } => {
            if policy::check::run(&files, format) {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        PolicyCommand::Schema => {
            print!("{}", crate::policy::json_schema::json_schema());
            std::process::ExitCode::SUCCESS
        }
        PolicyCommand::Explain { file, probe } => report(explain::explain(&file, &probe)),
        PolicyCommand::Diff { old, new, uid, gid, comm } => {
            let subject = explain::Probe { uid, gid, comm, ..explain::Probe::default() };
            report(explain::diff(&old, &new, &subject).map(drop))
        }
    }
}

fn report(outcome: anyhow::Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fwctl-guard: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Parse the command line and run the subcommand; the process exit status.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // Like every Unix tool, end quietly when the reader of our output goes away
        // (`fwctl-guard policy diff ... | head`). Rust ignores SIGPIPE, which turns the
        // next print into a panic. The agent keeps ignoring it: it writes to sockets.
        // SAFETY: restoring a signal's default disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let outcome = match cli.command {
        Command::Run { config, audit_log, devices, hook, policy, allow_audit_only, pin_path, cleanup } => {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(agent::run(agent::RunOptions {
                        config_path: &config,
                        audit_log: audit_log.as_deref(),
                        extra_devices: &devices,
                        hook,
                        policy: policy.as_deref(),
                        allow_audit_only,
                        pin_path: pin_path.as_deref(),
                        cleanup,
                    }))
                })
        }
        Command::Uninstall { config, pin_path } => uninstall::run(&config, pin_path.as_deref()),
        Command::Probe { json } => probe::run(json),
        Command::Devices { effects, json } => devices::run(effects, json),
        Command::Policy { command } => return policy_command(command),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fwctl-guard: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
