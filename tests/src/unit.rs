//! The shipped systemd unit (`packaging/fwctl-guard.service`), read the way systemd reads
//! the lines the tests need, and its capability bounding set turned into the `setpriv`
//! command line that gives a root process exactly that set, as systemd does.

/// The unit, embedded (the guests have no checkout).
pub const UNIT: &str = include_str!("../../packaging/fwctl-guard.service");

/// The values of `Key=` in `unit`, in order.
pub fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string).collect()
}

/// `CapabilityBoundingSet=` of `unit` (one line), as setpriv names them: `CAP_BPF` → `bpf`.
pub fn capabilities(unit: &str) -> Vec<String> {
    let lines = values(unit, "CapabilityBoundingSet");
    assert_eq!(lines.len(), 1, "one CapabilityBoundingSet= line in the unit");
    lines[0].split_whitespace().map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase()).collect()
}

/// `setpriv --bounding-set -all,+cap... --inh-caps -all --`: run as uid 0 with nothing
/// inheritable, the permitted and effective sets after exec are the bounding set, which is
/// what systemd gives a root service with `CapabilityBoundingSet=`.
pub fn setpriv(caps: &[String]) -> Vec<String> {
    let set: Vec<String> =
        std::iter::once("-all".to_string()).chain(caps.iter().map(|c| format!("+{c}"))).collect();
    ["setpriv", "--bounding-set", &set.join(","), "--inh-caps", "-all", "--"].map(str::to_string).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_set_becomes_a_setpriv_command_line() {
        let caps = capabilities("[Service]\nCapabilityBoundingSet=CAP_BPF CAP_SYS_ADMIN\n");
        assert_eq!(caps, ["bpf", "sys_admin"]);
        assert_eq!(
            setpriv(&caps).join(" "),
            "setpriv --bounding-set -all,+bpf,+sys_admin --inh-caps -all --"
        );
        assert_eq!(values(UNIT, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    }
}
