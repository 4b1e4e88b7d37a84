//! The `fwctl-guard` binary: the command line lives in [`fwctl_user::cli`].

fn main() -> std::process::ExitCode {
    fwctl_user::cli::main()
}
