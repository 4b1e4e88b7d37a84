//! Pinning under bpffs, so enforcement and counting outlive the agent.
//!
//! Layout, under the pin root (`config::DEFAULT_PIN_ROOT` unless configured):
//!
//! ```text
//! <root>/<hook>-<build>/maps/<MAP>      every map (counters, policy, ring buffer, META ...)
//! <root>/<hook>-<build>/progs/<program> every attached program
//! <root>/<hook>-<build>/links/<program> its link: while this file exists, it stays attached
//! ```
//!
//! `<build>` names the eBPF object, this kernel's offsets and the settings baked in at
//! load (ring-buffer size), so a set is adopted only by an agent that would have loaded
//! exactly the same thing. Anything else under the root is replaced make-before-break:
//! the new set is attached and pinned first, then the old pins are removed (which
//! detaches the old links). The agent holds an exclusive `flock` on the root while it
//! runs, so two agents never share or fight over one root.

use std::{
    ffi::CString,
    fs,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, Map, MapData},
    programs::links::{FdLink, PinnedLink},
};
use fwctl_common::model::{AgentMeta, KernelOffsets};
use sha2::{Digest, Sha256};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const BPF_OBJ_GET: libc::c_long = 7;

/// The identity of a program set: the object, the kernel layout it was relocated for,
/// and the load-time settings. Equal ids mean an agent may adopt the set as it is.
pub fn build_id(object: &[u8], offsets: &KernelOffsets, ring_buffer_bytes: u32) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(object);
    // SAFETY: KernelOffsets is #[repr(C)] plain integers without padding holes.
    hash.update(unsafe {
        std::slice::from_raw_parts(
            offsets as *const KernelOffsets as *const u8,
            std::mem::size_of::<KernelOffsets>(),
        )
    });
    hash.update(ring_buffer_bytes.to_le_bytes());
    hash.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The directory name of a set: `<hook>-<first 8 bytes of the build id>`.
pub fn set_name(hook: &str, build: &[u8; 32]) -> String {
    format!("{hook}-{}", hex(&build[..8]))
}

/// The pin root, locked for this process.
pub struct PinRoot {
    pub path: PathBuf,
    _lock: OwnedFd,
}

impl PinRoot {
    /// Create (if needed) and lock the root. Fails when it is not on bpffs, or when
    /// another agent holds it.
    pub fn lock(path: &Path) -> Result<Self> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !is_bpffs(parent) && !is_bpffs(path) {
            bail!(
                "{} is not on a BPF filesystem, so programs cannot outlive the agent: mount it \
                 (`mount -t bpf bpf {}`) or set `pin_path` to a directory on bpffs",
                path.display(),
                parent.display()
            );
        }
        fs::create_dir_all(path).with_context(|| format!("creating the pin root {}", path.display()))?;
        let lock = open_dir(path)?;
        // SAFETY: flock on a directory fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                bail!(
                    "another fwctl-guard agent is running with the pin root {} (it holds the lock); \
                     stop it first",
                    path.display()
                );
            }
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
        Ok(Self { path: path.to_path_buf(), _lock: lock })
    }

    /// The set directory for a hook and build.
    pub fn set(&self, hook: &str, build: &[u8; 32]) -> PinSet {
        PinSet { dir: self.path.join(set_name(hook, build)), build: *build, links: Vec::new() }
    }

    /// Mark this process as the agent in every set under the root whose META has this
    /// layout (see `claim`).
    pub fn claim_all(&self, agent: Agent) {
        for dir in self.others(Path::new("")) {
            claim(&dir.join("maps").join("META"), agent);
        }
    }

    /// Every entry of the root other than `keep` (older builds, other hook sets, leftovers).
    pub fn others(&self, keep: &Path) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.path) else { return Vec::new() };
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p != keep).collect()
    }

    /// Remove everything under the root, then the root itself: every pinned link is gone,
    /// so every program detaches once no process holds it.
    pub fn remove_all(self) -> Result<usize> {
        let sets = self.others(Path::new(""));
        let links: Vec<_> = sets.iter().flat_map(|set| link_ids(set)).collect();
        for set in &sets {
            remove_pins(set)?;
        }
        fs::remove_dir(&self.path).with_context(|| format!("removing {}", self.path.display()))?;
        wait_detached(&links)?;
        Ok(sets.len())
    }
}

/// One pinned program set (see the module docs for its layout).
pub struct PinSet {
    pub dir: PathBuf,
    pub build: [u8; 32],
    /// Links pinned by this agent (kept open so `--cleanup` can detach them at once).
    links: Vec<PinnedLink>,
}

impl PinSet {
    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join("maps").join(name)
    }

    fn prog_path(&self, name: &str) -> PathBuf {
        self.dir.join("progs").join(name)
    }

    fn link_path(&self, name: &str) -> PathBuf {
        self.dir.join("links").join(name)
    }

    pub fn create_dirs(&self) -> Result<()> {
        for sub in ["maps", "progs", "links"] {
            let dir = self.dir.join(sub);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// The META entry of the set, if its map is pinned and readable.
    pub fn meta(&self) -> Option<AgentMeta> {
        open_meta(&self.map_path("META"))?.get(&0, 0).ok()
    }

    /// Whether an earlier agent left this exact build fully attached and pinned.
    pub fn adoptable(&self) -> bool {
        self.meta().is_some_and(|m| m.complete == 1 && m.build_id == self.build)
    }

    /// Whether `program`'s link is pinned (it is attached: adopt it, do not attach again).
    pub fn has_link(&self, program: &str) -> bool {
        self.link_path(program).exists()
    }

    /// Pin a program this agent just attached, and its link.
    pub fn pin(&mut self, name: &str, program: &mut aya::programs::Program, link: FdLink) -> Result<()> {
        program.pin(self.prog_path(name)).with_context(|| format!("pinning program {name}"))?;
        let pinned = link.pin(self.link_path(name)).with_context(|| format!("pinning the link of {name}"))?;
        self.links.push(pinned);
        Ok(())
    }

    /// A new fd of a pinned program (for its kernel statistics).
    pub fn program_fd(&self, name: &str) -> Result<OwnedFd> {
        obj_get(&self.prog_path(name)).with_context(|| format!("opening the pinned program {name}"))
    }

    /// Unpin everything of this set and let go of it: returns once its links are released
    /// (the caller may still hold the programs, e.g. for their statistics).
    pub fn remove(self) -> Result<()> {
        let links: Vec<_> = link_ids(&self.dir).into_iter().map(|(link, _)| (link, 0)).collect();
        remove_pins(&self.dir)?;
        drop(self.links);
        wait_detached(&links)
    }
}

/// The agent process as the programs recognise it (`AgentMeta`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Agent {
    pub tgid: u32,
    pub start_ticks: u64,
}

impl Agent {
    /// This process.
    pub fn current() -> Result<Self> {
        let stat = fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        Ok(Self {
            tgid: std::process::id(),
            start_ticks: start_ticks(&stat).context("parsing /proc/self/stat")?,
        })
    }

    pub fn into_meta(self, build_id: [u8; 32], complete: bool) -> AgentMeta {
        AgentMeta {
            build_id,
            agent_tgid: self.tgid,
            complete: complete as u32,
            agent_start_ticks: self.start_ticks,
        }
    }
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot). `comm` (field 2)
/// may hold spaces and parentheses, so fields are counted from the last `)`.
fn start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Write the META entry of the set this agent runs.
pub fn write_meta<T: std::borrow::BorrowMut<MapData>>(
    meta: &mut Array<T, AgentMeta>,
    value: AgentMeta,
) -> Result<()> {
    meta.set(0, value, 0).context("writing the META map")
}

/// A pinned META map, if it is there and has this agent's value layout.
fn open_meta(pin: &Path) -> Option<Array<MapData, AgentMeta>> {
    Array::try_from(Map::Array(MapData::from_pin(pin).ok()?)).ok()
}

/// Write `agent` into a pinned META map, keeping its build id and completeness, if the
/// map has this agent's layout (an older build's may not).
fn claim(meta_pin: &Path, agent: Agent) {
    let Some(mut array) = open_meta(meta_pin) else { return };
    if let Ok(meta) = array.get(&0, 0) {
        let _ = array.set(0, agent.into_meta(meta.build_id, meta.complete == 1), 0);
    }
}

/// The kernel ids of the links pinned in a set directory, with their programs' ids.
fn link_ids(set: &Path) -> Vec<(u32, u32)> {
    let Ok(entries) = fs::read_dir(set.join("links")) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| PinnedLink::from_pin(e.path()).ok())
        .filter_map(|link| FdLink::from(link).info().ok().map(|info| (info.id(), info.program_id())))
        .collect()
}

/// Wait until the kernel has released `links` and their programs. bpffs frees an unlinked
/// pin after an RCU grace period, and a link's id goes before its program is detached, so
/// the program's id going is the sign it no longer runs; callers (uninstall, the tests)
/// must be able to rely on "removed" meaning "detached". Still there after 10 s: some
/// process holds an fd. A program id of 0 is not waited for.
fn wait_detached(links: &[(u32, u32)]) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut alive: Vec<u32> = aya::programs::loaded_links()
            .filter_map(Result::ok)
            .map(|info| info.id())
            .filter(|id| links.iter().any(|(link, _)| link == id))
            .collect();
        alive.extend(
            aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .map(|info| info.id())
                .filter(|id| links.iter().any(|(_, prog)| prog == id && *id != 0)),
        );
        if alive.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "pins removed, but links/programs {alive:?} are still loaded: another process holds them open"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Remove a set directory's pins (or a stray pin at the root); missing is not an error.
pub fn remove_pins(dir: &Path) -> Result<()> {
    let removed = if dir.is_dir() { fs::remove_dir_all(dir) } else { fs::remove_file(dir) };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the pinned objects under {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs writes into a zeroed struct we own.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } == 0) && stat.f_type as i64 == BPF_FS_MAGIC
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: plain open(2); the fd is owned right away.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("opening {}", path.display()));
    }
    // SAFETY: fd is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// BPF_OBJ_GET: an fd of whatever object is pinned at `path`.
fn obj_get(path: &Path) -> Result<OwnedFd> {
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut attr = ObjGet { pathname: c_path.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: the kernel reads `attr` and the NUL-terminated path it points to.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &mut attr as *mut ObjGet, std::mem::size_of::<ObjGet>())
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fd is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_differ_by_object_offsets_and_settings() {
        let offsets = KernelOffsets::default();
        let base = build_id(b"object", &offsets, 1 << 20);
        assert_eq!(base, build_id(b"object", &offsets, 1 << 20));
        assert_ne!(base, build_id(b"object2", &offsets, 1 << 20));
        assert_ne!(base, build_id(b"object", &offsets, 1 << 21));
        let moved = KernelOffsets { file_inode: 8, ..offsets };
        assert_ne!(base, build_id(b"object", &moved, 1 << 20));
    }

    #[test]
    fn start_ticks_are_field_22_even_with_odd_comms() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 50";
        assert_eq!(start_ticks(stat), Some(987654));
        assert_eq!(start_ticks("garbage"), None);
    }

    #[test]
    fn set_names_carry_hook_and_build() {
        let mut build = [0u8; 32];
        build[0] = 0xab;
        build[7] = 0x01;
        assert_eq!(set_name("lsm", &build), "lsm-ab00000000000001");
    }
}
