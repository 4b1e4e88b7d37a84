//! fwctl-guard's agent: audit (and, where the kernel allows, gate) device passthrough
//! commands. The binary (`main.rs`) only calls [`cli::main`]; everything else is here.
//!
//! The folders follow one command's path, and each depends only on those above it:
//!
//! - [`config`]: the agent configuration file (plain data; also says which hook set to use).
//! - [`names`]: every kernel id turned into its text (opcodes, catalogs, rule names), shared
//!   by the metrics and the audit log so both always say the same thing.
//! - [`health`]: what `/readyz` requires, set as start-up progresses.
//! - [`devices`]: which device nodes carry passthrough commands, and what each declares
//!   about its commands (effects).
//! - [`policy`]: the YAML front end (parse, check, resolve names, lint).
//! - [`enforce`]: a checked policy compiled into the tables the kernel evaluates, and the
//!   running policy (reloads).
//! - [`kernel`]: everything that talks to the kernel through aya: the eBPF object, hook
//!   sets, attaching, pinning, maps, program statistics, the running kernel's layout.
//! - [`audit`]: kernel events turned into audit records, written to the file and syslog.
//! - [`telemetry`]: the Prometheus metrics (one registration list) and the HTTP endpoint.
//! - [`agent`]: start-up and shutdown of `fwctl-guard run`.
//! - [`cli`]: the command line, one file per subcommand.

pub mod agent;
pub mod audit;
pub mod cli;
pub mod config;
pub mod devices;
pub mod enforce;
pub mod health;
pub mod kernel;
pub mod names;
pub mod policy;
pub mod telemetry;
