//! Scraping the agent's Prometheus endpoint with curl and reading the samples.

use std::{collections::BTreeMap, process::Command};

use anyhow::{bail, Context as _, Result};
use fwctl_common::hook_set::{self, role, Attach};

/// One sample: metric name and its labels in text order-independent form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// All samples of a scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<Sample, f64>,
}

impl Scrape {
    /// Sum of `name` over samples whose labels include every pair in `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(s, _)| {
                s.name == name && filter.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// The commands an agent counted can fall short of those issued only on the
    /// trampoline set, and only for commands whose every program the kernel skipped
    /// (recursion: the same program already running on that CPU): each such command
    /// costs a skip of each of the three deny programs on `security_file_ioctl`, so the
    /// shortfall may not exceed the fewest skips among them. Everywhere else, exact.
    /// Returns the shortfall.
    pub fn counted_short(&self, counted: f64, issued: f64) -> f64 {
        let short = issued - counted;
        let deny = trampoline_ioctl_deny_programs();
        let trampoline = self.sum("fwctl_guard_program_attached", &[("program", deny[0])]) == 1.0;
        let bound = if trampoline {
            deny.iter()
                .map(|p| self.sum("fwctl_guard_program_skipped_total", &[("program", p)]))
                .fold(f64::INFINITY, f64::min)
        } else {
            0.0
        };
        assert!(
            (0.0..=bound).contains(&short),
            "counted {counted} of {issued}: {short} missing, and the kernel's skips explain at most {bound}\n{}",
            self.text
        );
        if short > 0.0 {
            println!("counted {counted} of {issued}: {short} missed, every program on their path skipped");
        }
        short
    }
}

/// GET http://addr/metrics with curl.
pub fn scrape(addr: &str) -> Result<Scrape> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", &format!("http://{addr}/metrics")])
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!("curl failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    Ok(Scrape { samples: parse(&text)?, text })
}

/// GET http://addr/path with curl: (HTTP status, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", &format!("http://{addr}{path}")])
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!("curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let (body, code) = text.rsplit_once('\n').context("curl printed no status")?;
    Ok((code.parse()?, body.to_string()))
}

/// Parse the Prometheus text format (the subset the agent emits).
pub fn parse(text: &str) -> Result<BTreeMap<Sample, f64>> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("bad line {line}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").with_context(|| format!("bad label in {line}"))?;
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        samples.insert(Sample { name: name.to_string(), labels: map }, value.parse()?);
    }
    Ok(samples)
}

/// The trampoline set's deny programs on `security_file_ioctl` (the deciding one first,
/// then its backups), from the hook-set table.
pub fn trampoline_ioctl_deny_programs() -> Vec<&'static str> {
    trampoline_programs(|p| p.attach == Attach::FModRet("security_file_ioctl"))
}

/// The trampoline set's result program on the 64-bit ioctl syscall, which catches what all
/// its deny programs missed.
pub fn trampoline_ioctl_result_program() -> &'static str {
    trampoline_programs(|p| p.role & role::CHECK != 0 && p.attach == Attach::FExit("__x64_sys_ioctl"))[0]
}

fn trampoline_programs(which: impl Fn(&hook_set::Program) -> bool) -> Vec<&'static str> {
    hook_set::TRAMPOLINE.programs.iter().filter(|p| which(p)).map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trampoline_ioctl_path_is_read_from_the_hook_set_table() {
        assert_eq!(
            trampoline_ioctl_deny_programs(),
            [
                "fwctl_fmodret_file_ioctl",
                "fwctl_fmodret_file_ioctl_backup1",
                "fwctl_fmodret_file_ioctl_backup2"
            ]
        );
        assert_eq!(trampoline_ioctl_result_program(), "fwctl_fexit_sys_ioctl_checked");
    }
}
