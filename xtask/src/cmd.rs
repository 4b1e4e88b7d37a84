//! Running external commands: print them, run them, and turn a failure into an
//! error that carries the command's exit status (so `main` can exit with it).

use std::ffi::OsStr;
use std::fmt;
use std::io::{Read as _, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

/// A command that ran and did not succeed; `main` exits with `code`.
#[derive(Debug)]
pub struct Failed {
    pub command: String,
    pub code: i32,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed with exit code {}", self.command, self.code)
    }
}

impl std::error::Error for Failed {}

/// A `Command` for the cargo that runs xtask (`$CARGO`), falling back to `cargo`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Prints `cmd` (`$ ENV=.. prog args`), runs it with inherited stdio, and fails with
/// its exit status unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("$ {shown}");
    let status = cmd.status().with_context(|| format!("cannot start `{shown}`"))?;
    check(status, shown)
}

/// Like [`run`], but with the command's stdout passed through as it arrives (so progress
/// shows live) and also handed to `on_line` line by line (lossy UTF-8, line end dropped).
pub fn run_tee(cmd: &mut Command, on_line: impl FnMut(&str)) -> Result<()> {
    let shown = display(cmd);
    println!("$ {shown}");
    tee(cmd, shown, &mut std::io::stdout(), on_line)
}

/// [`run_tee`] with the output passed through to `out`.
fn tee(cmd: &mut Command, shown: String, out: &mut impl Write, mut on_line: impl FnMut(&str)) -> Result<()> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("cannot start `{shown}`"))?;
    let mut pipe = child.stdout.take().expect("stdout is piped");
    let (mut chunk, mut line) = ([0u8; 8192], Vec::new());
    loop {
        let n = match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                child.kill().ok();
                child.wait().ok();
                return Err(e).with_context(|| format!("cannot read the output of `{shown}`"));
            }
        };
        // Our own stdout going away (a closed pager) must not stop the command half-way.
        out.write_all(&chunk[..n]).and_then(|()| out.flush()).ok();
        for &byte in &chunk[..n] {
            if byte == b'\n' {
                on_line(String::from_utf8_lossy(&line).trim_end_matches('\r'));
                line.clear();
            } else {
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        on_line(String::from_utf8_lossy(&line).trim_end_matches('\r'));
    }
    let status = child.wait().with_context(|| format!("cannot wait for `{shown}`"))?;
    check(status, shown)
}

/// Runs `cmd` quietly and returns its stdout if it succeeded; `None` if it could not
/// start or failed. For probes ("is X installed?"), not for steps.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prints `cmd` and replaces this process with it (stdio, signals and the exit code
/// then belong to the command). Returns only if the exec failed.
pub fn exec(cmd: &mut Command) -> anyhow::Error {
    let shown = display(cmd);
    println!("$ {shown}");
    let err = cmd.exec();
    anyhow::Error::new(err).context(format!("cannot exec `{shown}`"))
}

/// Turns a finished command's status into `Ok` or a [`Failed`] error.
fn check(status: ExitStatus, command: String) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    // A signal-killed command exits like a shell reports it: 128 + signal.
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    Err(Failed { command, code }.into())
}

/// The command line as a shell would show it, with explicitly set environment first.
pub fn display(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), quote(v))));
    let argv = std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(quote);
    envs.chain(argv).collect::<Vec<_>>().join(" ")
}

/// Single-quotes a word if the shell would otherwise split or expand it.
fn quote(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn tee_hands_over_every_line_and_the_exit_status() {
        let (mut lines, mut out) = (Vec::new(), Vec::new());
        tee(&mut sh("printf 'one\\ntwo\\r\\nlast'"), "sh".into(), &mut out, |l| lines.push(l.to_string()))
            .unwrap();
        assert_eq!(lines, ["one", "two", "last"]);
        assert_eq!(out, b"one\ntwo\r\nlast");
        let err = tee(&mut sh("echo out; exit 3"), "sh".into(), &mut Vec::new(), |_| {}).unwrap_err();
        assert_eq!(err.downcast_ref::<Failed>().map(|f| f.code), Some(3));
    }
}
