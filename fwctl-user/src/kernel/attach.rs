//! Attaching hook sets, driven by the table in `fwctl_common::hook_set`: one loop over a
//! set's programs, one `match` on how each attaches. Every attached program and its link
//! are pinned; a program whose link is already pinned was attached by an earlier agent
//! and is adopted as it is.
//!
//! [`select`] is how the agent gets its programs: adopt the set an earlier agent left for
//! this very build, or load the object and attach the set the configuration asks for
//! (`auto`: the first of `hook_set::ALL` that attaches, saying why the better ones did not).

use anyhow::{Context as _, Result};
use aya::{
    maps::{Array, PerCpuArray},
    programs::{links::FdLink, FExit, FModRet, KProbe, Lsm, Program as AyaProgram, TracePoint},
    Btf, Ebpf,
};
use fwctl_common::{
    hook_set::{self, Attach, HookSet, Program, When},
    object::map,
};

use super::{
    error_chain,
    layout::Layout,
    object,
    pins::{self, PinRoot, PinSet},
    selftest::{Counts, Report, SelfTest},
};
use crate::{config::HookMode, devices::inventory::WatchEntry};

/// What [`select`] set up.
pub struct Attached {
    pub ebpf: Ebpf,
    pub set: &'static HookSet,
    /// Every program attached: the set's and the companions'.
    pub programs: Vec<&'static str>,
    pub pins: PinSet,
    /// An earlier agent's programs were adopted (nothing was attached anew).
    pub adopted: bool,
    /// The self-test right after attaching (or adopting).
    pub proof: Report,
}

/// What loading and attaching needs from the agent.
pub struct Inputs<'a> {
    pub layout: &'a Layout,
    pub ring_buffer_bytes: u32,
    /// The device map's content (the self-test's canary node included).
    pub entries: &'a [WatchEntry],
    pub root: &'a PinRoot,
    pub build: &'a [u8; 32],
    pub selftest: &'a SelfTest,
    /// The agent, written into the set's META before anything attaches: the programs must
    /// know it (its own ioctls are not audited, and only its canaries count).
    pub agent: pins::Agent,
}

/// The hook sets `mode` allows, best first.
pub fn candidates(mode: HookMode) -> Vec<&'static HookSet> {
    match mode.label() {
        None => hook_set::ALL.to_vec(),
        Some(label) => hook_set::by_label(label).into_iter().collect(),
    }
}

/// Why `set` cannot run here, known before trying: BPF LSM programs load and attach
/// where `bpf` is not an active LSM, and then never run.
pub fn known_silent(set: &HookSet, active_lsms: Option<&str>) -> Option<String> {
    let list = active_lsms?.trim();
    (set.id == hook_set::id::LSM && !list.split(',').any(|l| l == "bpf"))
        .then(|| format!("bpf is not an active LSM ({list}): BPF LSM programs would attach and never run"))
}

/// Adopt the pinned set an earlier agent left for this very build, if it still proves to
/// run; otherwise load the object, fill the device map, attach (and pin) the best set
/// `mode` allows and prove it runs: `auto` takes the first set that attaches and passes
/// the self-test, saying why the better ones did not; a set named in `hook:` that does
/// not pass is an error (its pins removed). The companions are attached beside the set.
pub fn select(mode: HookMode, inputs: &Inputs) -> Result<Attached> {
    let sets = candidates(mode);
    let forced = mode.label().is_some();
    for &set in &sets {
        let mut pins = inputs.root.set(set.label, inputs.build);
        if pins.adoptable() {
            let mut ebpf = load(inputs, &pins)?;
            let programs = attach_all(&mut ebpf, set, &mut pins, inputs.layout)?;
            let proof = prove(&ebpf, inputs.selftest, set, &programs)?;
            if proof.all_proven() {
                return Ok(Attached { ebpf, set, programs, pins, adopted: true, proof });
            }
            eprintln!(
                "fwctl-guard: warning: the pinned {} set does not prove to run ({}); attaching anew",
                set.label,
                proof.failures().join("; ")
            );
        }
    }
    let active_lsms = std::fs::read_to_string("/sys/kernel/security/lsm").ok();
    for (i, &set) in sets.iter().enumerate() {
        let e = match known_silent(set, active_lsms.as_deref()).filter(|_| !forced) {
            Some(why) => anyhow::anyhow!("{why}"),
            None => match try_set(set, inputs)? {
                Trial::Runs(attached) => return Ok(*attached),
                Trial::Silent(proof) => {
                    anyhow::anyhow!("attached, but not proven to run: {}", proof.failures().join("; "))
                }
                Trial::Refused(e) => e,
            },
        };
        let Some(next) = sets.get(i + 1) else {
            return Err(match mode.label() {
                Some(label) => e.context(format!("hook: {label} was requested")),
                None => e.context(format!("no hook set attaches and runs; the last tried was {}", set.title)),
            });
        };
        eprintln!(
            "fwctl-guard: warning: the {} hook set is unavailable ({e:#}); falling back to {}: {}.{}",
            set.title,
            next.title,
            fallback_consequence(next),
            if set.id == hook_set::id::LSM { format!(" {}", lsm_hint()) } else { String::new() },
        );
    }
    anyhow::bail!("no hook set to attach")
}

/// What trying one hook set found.
pub enum Trial {
    /// Attached, pinned and proven to run.
    Runs(Box<Attached>),
    /// The kernel accepted it, but the self-test did not see it run (removed again).
    Silent(Report),
    /// The kernel refused it, in its own words (nothing stays pinned).
    Refused(anyhow::Error),
}

/// Attach `set` anew and prove it runs; unless it runs, nothing of it stays pinned. An
/// `Err` is a failure of the agent itself (pins that cannot be removed), not of the set.
pub fn try_set(set: &'static HookSet, inputs: &Inputs) -> Result<Trial> {
    let mut pins = inputs.root.set(set.label, inputs.build);
    // An incomplete set of this build: an agent died while attaching it.
    pins::remove_pins(&pins.dir)?;
    let outcome = load(inputs, &pins).and_then(|mut ebpf| {
        let programs = attach_all(&mut ebpf, set, &mut pins, inputs.layout)?;
        let proof = prove(&ebpf, inputs.selftest, set, &programs)?;
        Ok((ebpf, programs, proof))
    });
    match outcome {
        Ok((ebpf, programs, proof)) if proof.all_proven() => {
            Ok(Trial::Runs(Box::new(Attached { ebpf, set, programs, pins, adopted: false, proof })))
        }
        Ok((ebpf, _, proof)) => {
            drop(ebpf);
            pins.remove()?;
            Ok(Trial::Silent(proof))
        }
        Err(e) => {
            pins.remove()?;
            Ok(Trial::Refused(e))
        }
    }
}

/// Load the object for `pins`, fill the device map, and write the agent into its META.
fn load(inputs: &Inputs, pins: &PinSet) -> Result<Ebpf> {
    let mut ebpf = object::load(&inputs.layout.offsets, inputs.ring_buffer_bytes, pins)?;
    object::populate_devices(&mut ebpf, inputs.entries)?;
    let mut meta = Array::try_from(ebpf.map_mut(map::META).context("map META missing")?)?;
    // Complete only once every program is attached and pinned (the agent writes it then).
    let complete = pins.adoptable();
    pins::write_meta(&mut meta, inputs.agent.into_meta(*inputs.build, complete))?;
    Ok(ebpf)
}

/// The self-test of freshly attached (or adopted) programs, reading the object's own
/// `CANARY` map.
fn prove(
    ebpf: &Ebpf,
    selftest: &SelfTest,
    set: &'static HookSet,
    programs: &[&'static str],
) -> Result<Report> {
    let map = ebpf.map(map::CANARY).context("map CANARY missing")?;
    let counts = Counts(PerCpuArray::try_from(map)?);
    Ok(selftest.run(&counts, set, programs))
}

/// What running on `set` costs the operator, in words.
fn fallback_consequence(set: &HookSet) -> String {
    if set.can_deny {
        format!("commands can be denied; {}", set.cost)
    } else {
        format!("commands are audited but cannot be denied, and {}", set.cost)
    }
}

/// The set's programs, then the companions.
fn attach_all(
    ebpf: &mut Ebpf,
    set: &HookSet,
    pins: &mut PinSet,
    layout: &Layout,
) -> Result<Vec<&'static str>> {
    let mut attacher = Attacher { ebpf, pins, btf: None, kallsyms: None, attached: Vec::new() };
    let mut order: Vec<usize> = (0..set.programs.len()).collect();
    order.sort_by_key(|&i| set.attach_rank(i));
    for i in order {
        attacher.attach_if_wanted(&set.programs[i], layout)?;
    }
    for program in &hook_set::COMPANIONS {
        attacher.attach_if_wanted(program, layout)?;
    }
    Ok(attacher.attached)
}

/// Attaching state shared by the programs of one set: the kernel's BTF and symbol list
/// are read once, and only if a program needs them.
struct Attacher<'a> {
    ebpf: &'a mut Ebpf,
    pins: &'a mut PinSet,
    btf: Option<Btf>,
    kallsyms: Option<String>,
    attached: Vec<&'static str>,
}

impl Attacher<'_> {
    /// Attach `program` if its [`When`] holds here; errors of optional programs are logged
    /// and skipped, those of required ones returned.
    fn attach_if_wanted(&mut self, program: &'static Program, layout: &Layout) -> Result<()> {
        let wanted = match program.when {
            When::Required | When::IfSupported => true,
            When::NvmeLoaded => layout.nvme_tracepoints,
            When::WithUring(hook) => layout.uring && self.attached.contains(&hook),
            When::FunctionPresent => {
                let Attach::KProbe(function) = program.attach else { return Ok(()) };
                self.pins.has_link(program.name) || self.kernel_has(function)?
            }
        };
        if !wanted {
            if program.when == When::NvmeLoaded {
                log::info!("{}: nvme tracepoints absent (nvme module not loaded)", program.name);
            }
            return Ok(());
        }
        match self.attach(program) {
            Ok(()) => {
                self.attached.push(program.name);
                Ok(())
            }
            Err(e) if program.when == When::IfSupported => {
                log::info!("skipping {} ({}): {e:#}", program.name, describe(&program.attach));
                Ok(())
            }
            Err(e) => Err(e.context(format!("attaching {} to {}", program.name, describe(&program.attach)))),
        }
    }

    /// Attach and pin one program, unless its link is pinned already (adopted).
    fn attach(&mut self, program: &Program) -> Result<()> {
        if self.pins.has_link(program.name) {
            return Ok(());
        }
        let name = program.name;
        if matches!(program.attach, Attach::Lsm(_) | Attach::FExit(_) | Attach::FModRet(_))
            && self.btf.is_none()
        {
            self.btf = Some(Btf::from_sys_fs().context("reading kernel BTF for LSM/fexit programs")?);
        }
        let btf = self.btf.as_ref();
        let loaded: &mut AyaProgram =
            self.ebpf.program_mut(name).with_context(|| format!("program {name} missing"))?;
        let link: FdLink = match program.attach {
            Attach::Lsm(hook) => {
                let p: &mut Lsm = loaded.try_into()?;
                p.load(hook, btf.expect("BTF read above")).map_err(chain)?;
                let id = p.attach().map_err(chain)?;
                p.take_link(id)?.into()
            }
            Attach::FExit(function) => {
                let p: &mut FExit = loaded.try_into()?;
                p.load(function, btf.expect("BTF read above")).map_err(chain)?;
                let id = p.attach().map_err(chain)?;
                p.take_link(id)?.into()
            }
            Attach::FModRet(function) => {
                let p: &mut FModRet = loaded.try_into()?;
                p.load(function, btf.expect("BTF read above")).map_err(chain)?;
                let id = p.attach().map_err(chain)?;
                p.take_link(id)?.into()
            }
            Attach::TracePoint(category, event) => {
                let p: &mut TracePoint = loaded.try_into()?;
                p.load().map_err(chain)?;
                let id = p.attach(category, event).map_err(chain)?;
                FdLink::try_from(p.take_link(id)?)?
            }
            Attach::KProbe(function) => {
                let p: &mut KProbe = loaded.try_into()?;
                p.load().map_err(chain)?;
                let id = p.attach(function, 0).map_err(chain)?;
                FdLink::try_from(p.take_link(id)?)?
            }
        };
        self.pins.pin(name, loaded, link)
    }

    /// Whether `/proc/kallsyms` lists `function` (modules included).
    fn kernel_has(&mut self, function: &str) -> Result<bool> {
        if self.kallsyms.is_none() {
            self.kallsyms =
                Some(std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?);
        }
        Ok(kallsyms_has(self.kallsyms.as_deref().unwrap_or_default(), function))
    }
}

/// Whether a `/proc/kallsyms` text lists `function`.
fn kallsyms_has(kallsyms: &str, function: &str) -> bool {
    kallsyms.lines().any(|l| l.split_whitespace().nth(2) == Some(function))
}

/// `lsm file_ioctl`, `tracepoint syscalls:sys_enter_ioctl`, ...
pub fn describe(attach: &Attach) -> String {
    match attach {
        Attach::Lsm(t) | Attach::FExit(t) | Attach::KProbe(t) | Attach::FModRet(t) => {
            format!("{} {t}", attach.kind())
        }
        Attach::TracePoint(category, event) => format!("tracepoint {category}:{event}"),
    }
}

fn chain(e: aya::programs::ProgramError) -> anyhow::Error {
    anyhow::anyhow!("{}", error_chain(&e))
}

/// What an operator can do about a refused LSM hook.
pub fn lsm_hint() -> String {
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) if list.trim().split(',').any(|l| l == "bpf") => format!(
            "bpf is in the active LSM list ({}), so the kernel or its sandbox refuses BPF LSM/tracing \
             programs (check lockdown and the BPF_LSM/DEBUG_INFO_BTF options).",
            list.trim()
        ),
        Ok(list) => format!(
            "bpf is not an active LSM ({}): boot with lsm={},bpf (CONFIG_BPF_LSM=y required).",
            list.trim(),
            list.trim()
        ),
        Err(_) => "securityfs is not mounted at /sys/kernel/security; mount it to check the LSM list.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_lines_name_module_functions() {
        let text = "ffffffffc0a01230 t cxlctl_fw_rpc\t[cxl_core]\nffffffff81000000 T _stext\n";
        assert!(kallsyms_has(text, "cxlctl_fw_rpc"));
        assert!(!kallsyms_has(text, "mlx5ctl_fw_rpc"));
        assert!(!kallsyms_has(text, "cxl_core"));
    }

    #[test]
    fn hook_modes_select_sets_from_the_table() {
        assert_eq!(candidates(HookMode::Auto).len(), hook_set::ALL.len());
        assert_eq!(candidates(HookMode::Lsm), [&hook_set::LSM]);
        assert_eq!(candidates(HookMode::Trampoline), [&hook_set::TRAMPOLINE]);
        assert_eq!(candidates(HookMode::Tracepoint), [&hook_set::TRACEPOINT]);
        // Every set can be named in `hook:`, and every name is a set.
        use clap::ValueEnum as _;
        let named: Vec<&str> = HookMode::value_variants().iter().filter_map(|m| m.label()).collect();
        for set in hook_set::ALL {
            assert!(named.contains(&set.label), "{} cannot be chosen", set.label);
        }
        assert!(named.iter().all(|l| hook_set::by_label(l).is_some()));
    }

    #[test]
    fn bpf_lsm_is_known_silent_where_bpf_is_not_an_active_lsm() {
        let ubuntu = "lockdown,capability,landlock,yama,apparmor,ima,evm\n";
        assert!(known_silent(&hook_set::LSM, Some(ubuntu)).unwrap().contains("not an active LSM"));
        assert!(known_silent(&hook_set::LSM, Some("lockdown,capability,bpf")).is_none());
        assert!(known_silent(&hook_set::TRAMPOLINE, Some(ubuntu)).is_none());
        assert!(known_silent(&hook_set::LSM, None).is_none(), "unknown: try, the self-test decides");
    }

    #[test]
    fn programs_are_described_by_kind_and_target() {
        assert_eq!(describe(&Attach::Lsm("file_ioctl")), "lsm file_ioctl");
        assert_eq!(describe(&Attach::TracePoint("nvme", "nvme_setup_cmd")), "tracepoint nvme:nvme_setup_cmd");
    }
}
