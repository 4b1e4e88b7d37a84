//! Which program types this kernel accepts, found by trying: the object's do-nothing
//! capability programs are loaded and attached, then detached at once. A type the kernel
//! accepts may still never run (BPF LSM compiled in but not active): these checks say
//! what loads, not what fires.

use anyhow::Result;
use aya::{
    maps::MapType,
    programs::{FEntry, Lsm, TracePoint},
    Btf, EbpfLoader,
};
use fwctl_common::object::{capability_program, map};

use super::{error_chain, object::EBPF_OBJECT};

/// Outcome of one check.
pub struct Check {
    pub name: &'static str,
    pub result: Result<(), String>,
}

/// Try every program type fwctl-guard can use, and ring buffers.
pub fn check_all() -> Vec<Check> {
    let mut checks = Vec::new();
    let ringbuf = match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(true) => Ok(()),
        Ok(false) => Err("not supported".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut ebpf = match EbpfLoader::new().map_max_entries(map::EVENTS, 4096).load(EBPF_OBJECT) {
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
        let p: &mut TracePoint = program(&mut ebpf, capability_program::TRACEPOINT)?;
        p.load().map_err(err)?;
        let link = p.attach("syscalls", "sys_enter_getppid").map_err(err)?;
        p.detach(link).map_err(err)
    })();
    checks.push(Check { name: "tracepoint", result: tracepoint });
    let lsm = (|| -> Result<(), String> {
        let btf = btf.clone()?;
        let p: &mut Lsm = program(&mut ebpf, capability_program::LSM)?;
        p.load("file_ioctl", &btf).map_err(err)?;
        let link = p.attach().map_err(err)?;
        p.detach(link).map_err(err)
    })();
    checks.push(Check { name: "lsm", result: lsm });
    let fentry = (|| -> Result<(), String> {
        let btf = btf.clone()?;
        let p: &mut FEntry = program(&mut ebpf, capability_program::FENTRY)?;
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
