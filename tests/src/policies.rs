//! Policy files for tests: the shipped policies (embedded, so the guests have them too),
//! a small builder for test policies, and writing them where the agent can read them.
//!
//! Not for: checking policies (the agent does, and the tests assert what it says).

use std::path::PathBuf;

/// `policies/default.yaml`: audit everything.
pub const DEFAULT: &str = include_str!("../../policies/default.yaml");
/// `policies/fleet-baseline.yaml`: enforce; destructive commands denied.
pub const FLEET_BASELINE: &str = include_str!("../../policies/fleet-baseline.yaml");
/// `policies/strict.yaml`.
pub const STRICT: &str = include_str!("../../policies/strict.yaml");

/// A rule denying NVMe Format NVM, named `no-format`.
pub const DENY_FORMAT: &str =
    "  - name: no-format\n    action: deny\n    match: {class: nvme-admin, opcode: format-nvm}\n";

/// A policy `name` in `mode` (`audit` or `enforce`) with `default: allow`,
/// `on_undecodable: audit` and `rules` (YAML list items, indented by two).
pub fn policy(name: &str, mode: &str, rules: &str) -> String {
    format!("version: 1\nname: {name}\nmode: {mode}\ndefault: allow\non_undecodable: audit\nrules:\n{rules}")
}

/// Writes `text` as `name` (may contain `/`) in this test process's policy directory and
/// returns its path. Write-then-rename: an agent watching the file never reads half of it.
pub fn policy_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fwctl-guard-policies-{}", std::process::id()));
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a file name")).expect("temp dir is writable");
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).expect("temp dir is writable");
    std::fs::rename(&tmp, &path).expect("rename within the temp dir");
    path
}

/// The three shipped policies in one directory, like the one config management deploys;
/// returns the directory.
pub fn shipped_policies() -> PathBuf {
    for (name, text) in
        [("default.yaml", DEFAULT), ("fleet-baseline.yaml", FLEET_BASELINE), ("strict.yaml", STRICT)]
    {
        policy_file(&format!("shipped/{name}"), text);
    }
    policy_file("shipped/.keep", "").parent().expect("in shipped/").to_path_buf()
}

/// The fleet baseline with `on_toctou: <on_toctou>`, written as a policy file.
pub fn fleet_baseline_on_toctou(on_toctou: &str) -> PathBuf {
    let line =
        FLEET_BASELINE.lines().find(|l| l.starts_with("on_toctou:")).expect("the baseline sets on_toctou");
    let text = FLEET_BASELINE.replace(line, &format!("on_toctou: {on_toctou}"));
    policy_file(&format!("fleet-baseline-{on_toctou}.yaml"), &text)
}
