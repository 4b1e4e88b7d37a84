//! `fwctl-guard policy explain` and `policy diff`: evaluate compiled policies in
//! userspace with the very `decide` the kernel runs (`fwctl_common::policy`).

use std::{collections::BTreeSet, path::Path};

use anyhow::{anyhow, bail, Result};
use fwctl_common::{
    device_number::device_key,
    effects::effect,
    model::{class, driver, ioctl, scope, verdict, Command},
    policy::{decide, declared, rule_id, Decision, Matcher, Subject},
};

use crate::{
    config::parse_major_minor,
    enforce::{
        compile::CompiledPolicy,
        load::{self, Loaded},
    },
    names::{self as labels, RuleIds},
    policy::names,
};

/// A command and subject described on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Probe {
    /// fwctl, nvme-admin, nvme-io, cxl-mem, scsi
    #[arg(long)]
    pub class: String,
    /// Opcode name from the class's catalog, or a number (0x.. or decimal).
    #[arg(long)]
    pub opcode: Option<String>,
    /// mlx5, cxl, pds, bnxt (fwctl); defaults to the class's own driver.
    #[arg(long)]
    pub driver: Option<String>,
    /// fwctl scope: configuration, debug-read-only, debug-write, debug-write-full.
    #[arg(long)]
    pub scope: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub op_mod: u32,
    #[arg(long, default_value_t = 0)]
    pub uid: u32,
    #[arg(long, default_value_t = 0)]
    pub gid: u32,
    #[arg(long, default_value = "")]
    pub comm: String,
    /// cgroup id (inode of the cgroup directory).
    #[arg(long, default_value_t = 0)]
    pub cgroup_id: u64,
    /// Device node as MAJOR:MINOR (character device).
    #[arg(long)]
    pub device: Option<String>,
    /// Effects the device declares for this command (comma-separated names, e.g.
    /// `data-change-immediate,lbcc`; `none` for a declared command without effects).
    /// Without this or --undeclared the device's effects are unknown, as for a device
    /// whose effects log could not be read.
    #[arg(long, value_delimiter = ',', conflicts_with = "undeclared")]
    pub effects: Vec<String>,
    /// The device's effects are known and it does not list this opcode.
    #[arg(long)]
    pub undeclared: bool,
    /// Evaluate as the syscall-tracepoint hook would (cannot deny: deny becomes would_deny).
    #[arg(long)]
    pub no_lsm: bool,
}

/// The effects word (`Subject::effects`) a probe describes.
fn effects_word(probe: &Probe) -> Result<u32> {
    if probe.undeclared {
        return Ok(effect::KNOWN);
    }
    if probe.effects.is_empty() {
        return Ok(0);
    }
    let mut word = effect::KNOWN | effect::DECLARED;
    for name in probe.effects.iter().map(|n| n.trim()).filter(|n| *n != "none") {
        word |= effect::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = effect::NAMES.iter().map(|(n, _)| *n).collect();
            anyhow!("unknown effect '{name}'; expected one of {}", known.join(", "))
        })?;
    }
    Ok(word)
}

/// What the device declares, in words.
fn describe_effects(word: u32) -> String {
    if word & effect::KNOWN == 0 {
        return "unknown (effects rules cannot match)".to_string();
    }
    if word & effect::DECLARED == 0 {
        return "the device does not list this opcode (undeclared)".to_string();
    }
    let names: Vec<&str> = effect::names(word).collect();
    if names.is_empty() {
        "declared, no effects".to_string()
    } else {
        format!("declared: {}", names.join(", "))
    }
}

/// The effects conditions of a matcher that held, in words; None if it has none.
fn effects_reason(m: &Matcher, word: u32) -> Option<String> {
    let names = |mask: u32| effect::names(mask).collect::<Vec<_>>().join(", ");
    let mut parts = Vec::new();
    match m.declared {
        declared::UNDECLARED => {
            parts.push("the device does not list the opcode (undeclared: true)".to_string())
        }
        declared::DECLARED => parts.push("the device lists the opcode (undeclared: false)".to_string()),
        _ => {}
    }
    if m.effects_any != 0 {
        parts.push(format!("any of [{}]: declared {}", names(m.effects_any), names(word & m.effects_any)));
    }
    if m.effects_all != 0 {
        parts.push(format!("all of [{}]", names(m.effects_all)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn load(path: &Path, ids: &RuleIds) -> Result<Loaded> {
    load::load(path, ids).map_err(|errors| anyhow!("{}", errors.join("\n")))
}

/// The command and subject a probe describes.
pub fn command_and_subject(probe: &Probe) -> Result<(Command, Subject)> {
    let class =
        names::class_from_name(&probe.class).ok_or_else(|| anyhow!("unknown class '{}'", probe.class))?;
    let drv = match &probe.driver {
        Some(d) => names::driver_from_name(d).ok_or_else(|| anyhow!("unknown driver '{d}'"))?,
        None => match class {
            class::NVME_ADMIN | class::NVME_IO => driver::NVME,
            class::CXL_MEM => driver::CXL,
            class::SCSI => driver::SG,
            _ => bail!("--driver is required for class fwctl (mlx5, cxl, pds, bnxt)"),
        },
    };
    let opcode = match &probe.opcode {
        None => fwctl_common::model::OPCODE_NONE,
        Some(text) => parse_number(text)
            .or_else(|| fwctl_common::catalog::for_class(class, drv).and_then(|c| c.opcode(text)))
            .ok_or_else(|| anyhow!("unknown opcode '{text}' for {} {}", probe.class, driver::label(drv)))?,
    };
    let scope = match &probe.scope {
        Some(s) => names::scope_from_name(s).ok_or_else(|| anyhow!("unknown scope '{s}'"))?,
        None => scope::NONE,
    };
    let ioctl = match class {
        class::FWCTL => ioctl::FWCTL_RPC,
        class::NVME_ADMIN => ioctl::NVME_ADMIN_CMD,
        class::NVME_IO => ioctl::NVME_IO_CMD,
        class::CXL_MEM => ioctl::CXL_SEND_COMMAND,
        _ => ioctl::SG_IO,
    };
    let command = Command { opcode, op_mod: probe.op_mod, scope, ..Command::new(ioctl, class, drv) };
    let mut comm = [0u8; 16];
    let bytes = probe.comm.as_bytes();
    comm[..bytes.len().min(15)].copy_from_slice(&bytes[..bytes.len().min(15)]);
    let device = match &probe.device {
        Some(mm) => {
            let (major, minor) = parse_major_minor(mm)?;
            device_key(false, major, minor)
        }
        None => 0,
    };
    let subject = Subject {
        uid: probe.uid,
        gid: probe.gid,
        comm,
        cgroup_id: probe.cgroup_id,
        device,
        effects: effects_word(probe)?,
        _pad: 0,
    };
    Ok((command, subject))
}

fn parse_number(text: &str) -> Option<u32> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// What decided, in words.
pub fn describe(decision: &Decision, ids: &RuleIds, policy: &CompiledPolicy) -> String {
    let rule = ids.label(decision.rule_id);
    let why = match decision.rule_id {
        rule_id::DEFAULT => "no rule matched: the policy's default".to_string(),
        rule_id::UNDECODABLE => "undecodable payload: on_undecodable".to_string(),
        _ => format!("rule '{rule}'"),
    };
    let mode = if policy.mode == fwctl_common::policy::mode::ENFORCE { "enforce" } else { "audit" };
    format!("verdict: {} ({why}; policy '{}', mode {mode})", verdict::label(decision.verdict), policy.name)
}

/// `policy explain FILE ...`
pub fn explain(path: &Path, probe: &Probe) -> Result<()> {
    let ids = RuleIds::default();
    let loaded = load(path, &ids)?;
    let (command, subject) = command_and_subject(probe)?;
    let decision = decide(&loaded.compiled, &loaded.compiled.header(0, 1), &command, &subject, !probe.no_lsm);
    println!(
        "{} {} opcode {} ({}) scope {} uid {} gid {} comm '{}'",
        class::label(command.class),
        driver::label(command.driver),
        labels::opcode(command.opcode),
        labels::opcode_name(command.class, command.driver, command.ioctl, command.opcode, 0),
        scope::label(command.scope),
        subject.uid,
        subject.gid,
        probe.comm
    );
    println!("device effects: {}", describe_effects(subject.effects));
    println!("{}", describe(&decision, &ids, &loaded.compiled));
    let rule = loaded.compiled.rules.iter().find(|r| r.rule_id == decision.rule_id);
    if let Some(reason) = rule.and_then(|r| effects_reason(&r.matcher, subject.effects)) {
        println!("matched on effects: {reason}");
    }
    Ok(())
}

/// Every (class, driver, opcode, scope) a diff walks: catalog opcodes, and one opcode no
/// catalog names (vendor-specific), at every scope that applies.
fn command_space() -> Vec<Command> {
    let mut out = Vec::new();
    let spaces = [
        (class::NVME_ADMIN, driver::NVME),
        (class::NVME_IO, driver::NVME),
        (class::CXL_MEM, driver::CXL),
        (class::SCSI, driver::SG),
        (class::FWCTL, driver::MLX5),
        (class::FWCTL, driver::CXL),
        (class::FWCTL, driver::PDS),
        (class::FWCTL, driver::BNXT),
    ];
    for (c, d) in spaces {
        let mut opcodes: BTreeSet<u32> = fwctl_common::catalog::for_class(c, d)
            .map(|cat| cat.entries.iter().map(|(op, _)| *op).collect())
            .unwrap_or_default();
        opcodes.insert(0xc7); // vendor-specific in NVMe admin; unknown elsewhere
        let scopes: &[u8] = if c == class::FWCTL {
            &[scope::CONFIGURATION, scope::DEBUG_READ_ONLY, scope::DEBUG_WRITE, scope::DEBUG_WRITE_FULL]
        } else {
            &[scope::NONE]
        };
        for opcode in opcodes {
            for s in scopes {
                out.push(Command { opcode, scope: *s, ..Command::new(0, c, d) });
            }
        }
    }
    out
}

/// `policy diff OLD NEW`: the commands whose verdict changes, for one subject.
pub fn diff(old: &Path, new: &Path, probe_subject: &Probe) -> Result<usize> {
    let ids = RuleIds::default();
    let (old, new) = (load(old, &ids)?, load(new, &ids)?);
    let subject =
        command_and_subject(&Probe { class: "nvme-admin".into(), opcode: None, ..probe_subject.clone() })?.1;
    let mut changed = 0;
    for command in command_space() {
        let a = decide(&old.compiled, &old.compiled.header(0, 1), &command, &subject, true);
        let b = decide(&new.compiled, &new.compiled.header(0, 1), &command, &subject, true);
        if a.verdict != b.verdict {
            changed += 1;
            println!(
                "{:<10} {:<6} {:<10} {:<36} {:<17} {} [{}] -> {} [{}]",
                class::label(command.class),
                driver::label(command.driver),
                labels::opcode(command.opcode),
                labels::opcode_name(command.class, command.driver, command.ioctl, command.opcode, 0),
                scope::label(command.scope),
                verdict::label(a.verdict),
                ids.label(a.rule_id),
                verdict::label(b.verdict),
                ids.label(b.rule_id),
            );
        }
    }
    if old.compiled.uses_effects || new.compiled.uses_effects {
        println!(
            "note: rules on declared effects depend on the device and are compared here as for a device \
             whose effects are unknown; check them with `policy explain --effects ...` or --undeclared"
        );
    }
    println!(
        "{changed} command(s) change verdict ('{}' -> '{}'; subject uid {} gid {} comm '{}')",
        old.compiled.name, new.compiled.name, subject.uid, subject.gid, probe_subject.comm
    );
    Ok(changed)
}
