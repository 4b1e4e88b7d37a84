//! Single values of a `match`: opcodes (names and numbers, resolved per opcode space),
//! integers, comms, cgroup paths and device nodes. Each parser returns the value or
//! the message that says what is wrong with it; `resolve` adds the position.

use std::{
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::Path,
};

use fwctl_common::model::{class, OPCODE_NONE};

use super::{
    names::{self, Space},
    resolved::{comm_bytes, CgroupSel, DeviceSel, OpcodeSel, COMM_MAX},
    yaml::{Node, Value},
};

/// An integer: a YAML integer, or a string of decimal digits or `0x` hex.
pub fn number(node: &Node) -> Option<i128> {
    match &node.value {
        Value::Int(v) => Some(*v),
        Value::Str(s) => {
            let s = s.trim();
            if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                i128::from_str_radix(hex, 16).ok().filter(|_| !hex.starts_with(['+', '-']))
            } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `a string 'root'`, `a list`: what a node is, for messages.
pub fn describe(node: &Node) -> String {
    match node.text() {
        Some(t) => format!("{} '{t}'", node.kind()),
        None => node.kind().to_string(),
    }
}

/// One `opcode:` entry as OpcodeSels: a name in every space whose catalog has it, a
/// number in every space whose opcodes are that wide. `classes` are the classes the
/// rule names (for the message).
pub fn opcode(node: &Node, spaces: &[Space], classes: &[u8]) -> Result<Vec<OpcodeSel>, String> {
    let text = node.text().unwrap_or_default();
    if let Some(v) = number(node) {
        return opcode_number(v, spaces);
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) || matches!(node.value, Value::Float(_)) {
        return Err(format!("bad opcode number '{text}' (decimal or 0x-prefixed hex)"));
    }
    let sels: Vec<OpcodeSel> = spaces
        .iter()
        .filter_map(|s| {
            s.catalog().opcode(text).map(|op| OpcodeSel { class: s.class, driver: s.driver, opcode: op })
        })
        .collect();
    if sels.is_empty() {
        return Err(unknown_opcode(text, spaces, classes));
    }
    Ok(sels)
}

fn opcode_number(v: i128, spaces: &[Space]) -> Result<Vec<OpcodeSel>, String> {
    let op = u32::try_from(v).map_err(|_| format!("opcode {v} is out of range (0 to 0xffff)"))?;
    let sels: Vec<OpcodeSel> = spaces
        .iter()
        .filter(|s| op <= s.max_opcode() && op != OPCODE_NONE)
        .map(|s| OpcodeSel { class: s.class, driver: s.driver, opcode: op })
        .collect();
    if sels.is_empty() {
        let max = spaces.iter().map(|s| s.max_opcode()).max().unwrap_or(0);
        let list = spaces.iter().map(|s| s.label()).collect::<Vec<_>>().join(", ");
        return Err(format!("opcode {op:#x} is larger than any opcode of {list} (at most {max:#x})"));
    }
    Ok(sels)
}

/// "unknown opcode 'x' for class nvme-admin (catalog nvme-admin); did you mean 'y'?"
fn unknown_opcode(name: &str, spaces: &[Space], classes: &[u8]) -> String {
    let every = names::spaces(&[], &[]);
    let catalogs = uniq(spaces.iter().map(|s| s.catalog_name()));
    let searched = uniq(spaces.iter().map(|s| class::label(s.class)));
    let scope = if classes.is_empty() && spaces.len() == every.len() {
        "any class".to_string()
    } else if searched.len() == 1 {
        format!("class {}", searched[0])
    } else {
        format!("classes {}", searched.join(", "))
    };
    let plural = if catalogs.len() == 1 { "catalog" } else { "catalogs" };
    let mut message = format!("unknown opcode '{name}' for {scope} ({plural} {})", catalogs.join(", "));
    let elsewhere: Vec<String> = every
        .into_iter()
        .filter(|s| !spaces.contains(s) && s.catalog().opcode(name).is_some())
        .map(|s| s.label())
        .collect();
    let candidates = spaces.iter().flat_map(|s| s.catalog().entries.iter().map(|(_, n)| *n));
    if !elsewhere.is_empty() {
        message.push_str(&format!("; '{name}' is an opcode of {}", elsewhere.join(", ")));
    } else if let Some(hint) = names::suggest(name, candidates) {
        message.push_str(&format!("; did you mean '{hint}'?"));
    }
    message
}

fn uniq<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// A task name as the kernel stores it.
pub fn comm(text: &str) -> Result<[u8; 16], String> {
    if let Some(c) = comm_bytes(text) {
        return Ok(c);
    }
    if text.contains('\0') {
        return Err("comm must not contain NUL".to_string());
    }
    let mut cut = COMM_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Err(format!(
        "comm '{text}' is {} bytes; the kernel keeps at most {COMM_MAX} (TASK_COMM_LEN 16 with the NUL), \
         so it could never match; write '{}'",
        text.len(),
        &text[..cut]
    ))
}

/// A cgroup v2 path (absolute below the mount, or with the `/sys/fs/cgroup` prefix),
/// normalized, with its id when the directory exists below `root` now.
pub fn cgroup(text: &str, root: &Path) -> Result<CgroupSel, String> {
    let rel =
        text.strip_prefix("/sys/fs/cgroup").filter(|r| r.is_empty() || r.starts_with('/')).unwrap_or(text);
    let rel = if rel.is_empty() { "/" } else { rel };
    if !rel.starts_with('/') {
        return Err(format!(
            "cgroup '{text}' must be an absolute path below /sys/fs/cgroup, e.g. /system.slice/fwupd.service"
        ));
    }
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(format!("cgroup '{text}' must not contain '.' or '..'"));
    }
    let dir = root.join(parts.join("/"));
    let id = match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Some(meta.ino()),
        Ok(_) => return Err(format!("{} exists but is not a cgroup directory", dir.display())),
        Err(_) => None,
    };
    Ok(CgroupSel { path: format!("/{}", parts.join("/")), id })
}

/// A device node: a path (stat'ed now, must exist) or `[block:|char:]MAJOR:MINOR`
/// (a character device unless `block:`).
pub fn device(text: &str) -> Result<DeviceSel, String> {
    let source = text.to_string();
    if text.starts_with('/') {
        let meta = std::fs::metadata(Path::new(text)).map_err(|e| {
            format!(
                "cannot stat {text}: {e} (a device path must exist when the policy is loaded; \
                 write MAJOR:MINOR for a device that appears later)"
            )
        })?;
        let kind = meta.file_type();
        if !kind.is_char_device() && !kind.is_block_device() {
            return Err(format!("{text} is not a device node"));
        }
        let rdev = meta.rdev();
        return Ok(DeviceSel {
            block: kind.is_block_device(),
            major: libc::major(rdev),
            minor: libc::minor(rdev),
            source,
        });
    }
    let (block, numbers) = match text.split_once(':') {
        Some(("block", rest)) => (true, rest),
        Some(("char", rest)) => (false, rest),
        _ => (false, text),
    };
    let (major, minor) = crate::config::parse_major_minor(numbers).map_err(|e| {
        format!("expected a device path (/dev/...) or [block:|char:]MAJOR:MINOR, found '{text}' ({e:#})")
    })?;
    Ok(DeviceSel { block, major, minor, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_cuts_at_a_character_boundary() {
        let e = comm("ééééééééé").unwrap_err();
        assert!(e.ends_with("write 'ééééééé'"), "{e}");
        assert_eq!(&comm("fwupd").unwrap()[..6], b"fwupd\0");
    }

    #[test]
    fn cgroup_paths_are_normalized() {
        let root = Path::new("/nonexistent-cgroup-root");
        assert_eq!(cgroup("/a//b/", root).unwrap().path, "/a/b");
        assert_eq!(cgroup("/sys/fs/cgroup", root).unwrap().path, "/");
        assert_eq!(cgroup("/sys/fs/cgroupx", root).unwrap().path, "/sys/fs/cgroupx");
        assert!(cgroup("/a/./b", root).is_err());
    }

    #[test]
    fn device_numbers() {
        let d = device("block:259:1").unwrap();
        assert_eq!((d.block, d.major, d.minor), (true, 259, 1));
        assert!(device("4096:0").unwrap_err().contains("out of range"));
    }
}
