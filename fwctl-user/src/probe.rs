//! `fwctl-guard probe`: what this kernel lets fwctl-guard do, found by trying it
//! (loading and attaching tiny programs of each type), and which passthrough devices exist.

use std::path::Path;

use anyhow::Result;
use aya::{
    maps::MapType,
    programs::{FEntry, Lsm, TracePoint},
    Btf, EbpfLoader,
};
use fwctl_common::model::device_kind;

use crate::{inventory, kernel::EBPF_OBJECT};

/// Outcome of one capability check.
pub struct Check {
    pub name: &'static str,
    pub result: Result<(), String>,
}

/// Try every hook type fwctl-guard can use.
pub fn capabilities() -> Vec<Check> {
    let mut checks = Vec::new();
    let ringbuf = match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(true) => Ok(()),
        Ok(false) => Err("not supported".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut ebpf = match EbpfLoader::new().map_max_entries("EVENTS", 4096).load(EBPF_OBJECT) {
        Ok(ebpf) => ebpf,
        Err(e) => {
            let e = format!("{e:#}");
            for name in ["tracepoint", "lsm", "fentry"] {
                checks.push(Check { name, result: Err(format!("eBPF object did not load: {e}")) });
            }
            checks.push(Check { name: "ringbuf", result: ringbuf });
            return checks;
        }
    };
    let btf = Btf::from_sys_fs().map_err(|e| e.to_string());
    let tracepoint = (|| -> Result<(), String> {
        let p: &mut TracePoint = program(&mut ebpf, "fwctl_probe_tracepoint")?;
        p.load().map_err(err)?;
        let link = p.attach("syscalls", "sys_enter_getppid").map_err(err)?;
        p.detach(link).map_err(err)
    })();
    checks.push(Check { name: "tracepoint", result: tracepoint });
    let lsm = (|| -> Result<(), String> {
        let btf = btf.clone()?;
        let p: &mut Lsm = program(&mut ebpf, "fwctl_probe_lsm")?;
        p.load("file_ioctl", &btf).map_err(err)?;
        let link = p.attach().map_err(err)?;
        p.detach(link).map_err(err)
    })();
    checks.push(Check { name: "lsm", result: lsm });
    let fentry = (|| -> Result<(), String> {
        let btf = btf.clone()?;
        let p: &mut FEntry = program(&mut ebpf, "fwctl_probe_fentry")?;
        p.load("security_file_ioctl", &btf).map_err(err)?;
        let link = p.attach().map_err(err)?;
        p.detach(link).map_err(err)
    })();
    checks.push(Check { name: "fentry", result: fentry });
    checks.push(Check { name: "ringbuf", result: ringbuf });
    checks
}

fn program<'a, T>(ebpf: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or_else(|| format!("program {name} missing"))?;
    program.try_into().map_err(err)
}

fn err(e: impl std::error::Error) -> String {
    error_chain(&e)
}

/// An error with its sources, e.g. "the BPF_PROG_LOAD syscall failed: Operation not permitted".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    // The source chain carries the kernel's errno ("Operation not permitted").
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Print the capability table and the device inventory.
pub fn run() -> Result<()> {
    println!("kernel: {}", std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim());
    if let Ok(lsms) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        println!("active LSMs: {}", lsms.trim());
    }
    println!("\nhooks and program types (tried for real):");
    for check in capabilities() {
        match check.result {
            Ok(()) => println!("  {:<11} ok", check.name),
            Err(e) => println!("  {:<11} refused: {e}", check.name),
        }
    }
    println!("\npassthrough devices:");
    for line in crate::devices::device_lines(&inventory::scan_sysfs(Path::new("/sys"))) {
        println!("  {line}");
    }
    let majors = inventory::major_entries(&inventory::parse_proc_devices(
        &std::fs::read_to_string("/proc/devices").unwrap_or_default(),
    ));
    println!("\nregistered passthrough majors (/proc/devices):");
    if majors.is_empty() {
        println!("  none");
    }
    for m in majors {
        println!(
            "  {:<5} {:<6} {} ({})",
            m.major,
            if m.block { "block" } else { "char" },
            device_kind::label(m.info.kind),
            m.source
        );
    }
    Ok(())
}
