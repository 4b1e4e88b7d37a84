//! The `fwctl-guard` command line.

use fwctl_user::{agent, probe};

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
        /// Kernel hooks: auto (LSM when the kernel accepts it, else syscall tracepoints),
        /// lsm, tracepoint. Overrides `hook` in the configuration.
        #[arg(long, value_enum)]
        hook: Option<fwctl_user::kernel::HookMode>,
    },
    /// Print which hooks and program types this kernel accepts, and the passthrough devices.
    Probe,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let outcome = match cli.command {
        Command::Run { config, audit_log, devices, hook } => tokio::runtime::Builder::new_multi_thread()
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
                }))
            }),
        Command::Probe => probe::run(),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fwctl-guard: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
