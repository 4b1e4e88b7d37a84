//! Parser for tracefs event `format` files.
//!
//! **What it is for.** Tracepoint programs read their event record at fixed
//! offsets, and those offsets differ between kernels (e.g. `nvme:nvme_setup_cmd`,
//! `syscalls:sys_enter_ioctl`). At load time the agent reads
//! `/sys/kernel/tracing/events/<category>/<event>/format` with
//! [`EventFormat::read`], looks up the fields the programs need with
//! [`EventFormat::field`], and passes their offsets to the programs instead of
//! trusting a table.
//!
//! A `format` file looks like this (the separators inside field lines are tabs):
//!
//! ```text
//! name: sys_enter_ioctl
//! ID: 898
//! format:
//!     field:unsigned short common_type;    offset:0;    size:2;    signed:0;
//!     ...
//!     field:unsigned int cmd;    offset:24;    size:8;    signed:0;
//!
//! print fmt: "..."
//! ```
//!
//! **What it is not for.** It does not interpret the `print fmt` line, does not
//! decode records, and does not enable or attach events. `__data_loc` fields are
//! reported as-is (their 4-byte slot holds `offset | (len << 16)` of the dynamic
//! data; decoding that is the caller's business).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// tracefs mount points tried by [`EventFormat::read`], in order.
pub const TRACEFS_ROOTS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// One `field:` line of a format file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name, without any array suffix (`char disk[32]` -> `disk`).
    pub name: String,
    /// The declaration with the name removed, array suffix kept:
    /// `unsigned int`, `char[32]`, `__data_loc char[]`, `const char *`.
    pub type_decl: String,
    /// Byte offset in the event record (the common header included).
    pub offset: u32,
    /// Size in bytes (for arrays, of the whole array).
    pub size: u32,
    pub signed: bool,
}

/// A parsed event `format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFormat {
    /// Event name used in error messages: `category:event` when read with
    /// [`EventFormat::read`], otherwise the file's `name:` line.
    pub name: String,
    /// The event's id (`ID:` line), as used for perf attachment.
    pub id: Option<u32>,
    /// All fields in file order, the `common_*` ones included.
    pub fields: Vec<Field>,
}

impl EventFormat {
    /// Parses the text of a `format` file.
    pub fn parse(text: &str) -> Result<Self> {
        let mut name: Option<String> = None;
        let mut id = None;
        let mut fields = Vec::new();
        for (lineno, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let ctx = || format!("tracefs format line {}: {raw:?}", lineno + 1);
            if line.starts_with("print fmt:") {
                break;
            } else if let Some(rest) = line.strip_prefix("name:") {
                name = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("ID:") {
                let v = rest.trim();
                id = Some(v.parse::<u32>().map_err(|_| anyhow!("invalid event ID {v:?}")).with_context(ctx)?);
            } else if line.starts_with("field:") {
                fields.push(parse_field(line).with_context(ctx)?);
            }
        }
        let name = name.unwrap_or_else(|| "<unnamed event>".to_owned());
        if fields.is_empty() {
            bail!("tracefs format of event {name}: no field lines found");
        }
        Ok(Self { name, id, fields })
    }

    /// Reads and parses `events/<category>/<event>/format` from the first of
    /// [`TRACEFS_ROOTS`] that has it.
    pub fn read(category: &str, event: &str) -> Result<Self> {
        let mut errors = Vec::new();
        for root in TRACEFS_ROOTS {
            match Self::read_in(Path::new(root), category, event) {
                Ok(f) => return Ok(f),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        bail!(
            "tracefs: cannot read the format of event {category}:{event} ({}). Is tracefs \
             mounted (mount -t tracefs nodev /sys/kernel/tracing) and the event's subsystem \
             loaded?",
            errors.join("; ")
        )
    }

    /// Like [`read`](Self::read) but under an explicit tracefs root.
    pub fn read_in(root: &Path, category: &str, event: &str) -> Result<Self> {
        for part in [category, event] {
            if part.is_empty() || part.contains('/') || part == "." || part == ".." {
                bail!("tracefs: invalid event name component {part:?}");
            }
        }
        let path: PathBuf = root.join("events").join(category).join(event).join("format");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut fmt = Self::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
        fmt.name = format!("{category}:{event}");
        Ok(fmt)
    }

    /// The field called `name` (array fields by their bare name).
    pub fn field(&self, name: &str) -> Result<&Field> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| anyhow!("tracefs: event {} has no field '{name}'", self.name))
    }
}

/// Parses `field:<decl>;\toffset:N;\tsize:N;\tsigned:N;` (already trimmed).
fn parse_field(line: &str) -> Result<Field> {
    let mut parts = line.split(';').map(str::trim);
    let decl = parts
        .next()
        .and_then(|p| p.strip_prefix("field:"))
        .ok_or_else(|| anyhow!("not a field line"))?
        .trim();
    let (mut offset, mut size, mut signed) = (None, None, None);
    for part in parts.filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once(':')
            .ok_or_else(|| anyhow!("malformed attribute {part:?} (expected key:value)"))?;
        let value = value.trim();
        let num = || value.parse::<u32>().map_err(|_| anyhow!("invalid {key} value {value:?}"));
        match key.trim() {
            "offset" => offset = Some(num()?),
            "size" => size = Some(num()?),
            "signed" => signed = Some(num()? != 0),
            _ => {} // unknown attributes from future kernels are ignored
        }
    }
    let (name, type_decl) = split_decl(decl)?;
    Ok(Field {
        name,
        type_decl,
        offset: offset.ok_or_else(|| anyhow!("field '{decl}' has no offset"))?,
        size: size.ok_or_else(|| anyhow!("field '{decl}' has no size"))?,
        // Very old kernels had no `signed:` attribute.
        signed: signed.unwrap_or(false),
    })
}

/// Splits `unsigned int cmd` into (`cmd`, `unsigned int`) and `char disk[32]`
/// into (`disk`, `char[32]`).
fn split_decl(decl: &str) -> Result<(String, String)> {
    let mut rest = decl.trim_end();
    // Peel trailing `[...]` groups (kept, in order, as the array suffix).
    let mut suffix_start = rest.len();
    while rest.ends_with(']') {
        let open = rest.rfind('[').ok_or_else(|| anyhow!("unbalanced ']' in field declaration '{decl}'"))?;
        suffix_start = open;
        rest = rest[..open].trim_end();
    }
    let suffix = decl[suffix_start..].trim_end();
    let ident_start = rest.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    let name = &rest[ident_start..];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("no field name in declaration '{decl}'");
    }
    let ty = rest[..ident_start].trim_end();
    if ty.is_empty() {
        bail!("no type in field declaration '{decl}'");
    }
    Ok((name.to_owned(), format!("{ty}{suffix}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From this machine's /sys/kernel/tracing (kernel 6.18).
    const SYS_ENTER_IOCTL: &str = "name: sys_enter_ioctl
ID: 898
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int cmd;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long arg;\toffset:32;\tsize:8;\tsigned:0;

print fmt: \"fd: 0x%08lx, cmd: 0x%08lx, arg: 0x%08lx\", ((unsigned long)(REC->fd)), ((unsigned long)(REC->cmd)), ((unsigned long)(REC->arg))
";

    /// Reconstructed from drivers/nvme/host/trace.h (TP_STRUCT__entry) and the
    /// offsets in /work/shared/reference/passthrough-abi.md; the ID is made up.
    const NVME_SETUP_CMD: &str = "name: nvme_setup_cmd
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char disk[32];\toffset:8;\tsize:32;\tsigned:0;
\tfield:int ctrl_id;\toffset:40;\tsize:4;\tsigned:1;
\tfield:int qid;\toffset:44;\tsize:4;\tsigned:1;
\tfield:u8 opcode;\toffset:48;\tsize:1;\tsigned:0;
\tfield:u8 flags;\toffset:49;\tsize:1;\tsigned:0;
\tfield:u8 fctype;\toffset:50;\tsize:1;\tsigned:0;
\tfield:u16 cid;\toffset:52;\tsize:2;\tsigned:0;
\tfield:u32 nsid;\toffset:56;\tsize:4;\tsigned:0;
\tfield:bool metadata;\toffset:60;\tsize:1;\tsigned:0;
\tfield:u8 cdw10[24];\toffset:61;\tsize:24;\tsigned:0;

print fmt: \"nvme%d: %sqid=%d, cmdid=%u, nsid=%u, flags=0x%x, meta=0x%x, cmd=(%s %s)\", REC->ctrl_id, nvme_trace_disk_name(p, REC->disk), REC->qid, REC->cid, REC->nsid, REC->flags, REC->metadata, ((REC->opcode) == 0x10 ? \"field: x\" : \"\"), \"\"
";

    fn f(name: &str, type_decl: &str, offset: u32, size: u32, signed: bool) -> Field {
        Field { name: name.into(), type_decl: type_decl.into(), offset, size, signed }
    }

    #[test]
    fn sys_enter_ioctl() {
        let fmt = EventFormat::parse(SYS_ENTER_IOCTL).unwrap();
        assert_eq!(fmt.name, "sys_enter_ioctl");
        assert_eq!(fmt.id, Some(898));
        assert_eq!(fmt.fields.len(), 8);
        assert_eq!(fmt.fields[0], f("common_type", "unsigned short", 0, 2, false));
        assert_eq!(*fmt.field("__syscall_nr").unwrap(), f("__syscall_nr", "int", 8, 4, true));
        assert_eq!(*fmt.field("fd").unwrap(), f("fd", "unsigned int", 16, 8, false));
        assert_eq!(*fmt.field("cmd").unwrap(), f("cmd", "unsigned int", 24, 8, false));
        assert_eq!(*fmt.field("arg").unwrap(), f("arg", "unsigned long", 32, 8, false));
    }

    #[test]
    fn nvme_setup_cmd() {
        let fmt = EventFormat::parse(NVME_SETUP_CMD).unwrap();
        assert_eq!(fmt.id, Some(1234));
        assert_eq!(*fmt.field("disk").unwrap(), f("disk", "char[32]", 8, 32, false));
        assert_eq!(*fmt.field("ctrl_id").unwrap(), f("ctrl_id", "int", 40, 4, true));
        assert_eq!(fmt.field("qid").unwrap().offset, 44);
        assert_eq!(*fmt.field("opcode").unwrap(), f("opcode", "u8", 48, 1, false));
        assert_eq!(fmt.field("flags").unwrap().offset, 49);
        assert_eq!(fmt.field("fctype").unwrap().offset, 50);
        assert_eq!(*fmt.field("cid").unwrap(), f("cid", "u16", 52, 2, false));
        assert_eq!(fmt.field("nsid").unwrap().offset, 56);
        assert_eq!(*fmt.field("metadata").unwrap(), f("metadata", "bool", 60, 1, false));
        assert_eq!(*fmt.field("cdw10").unwrap(), f("cdw10", "u8[24]", 61, 24, false));
        // The print fmt line (which mentions "field:") is not parsed.
        assert_eq!(fmt.fields.len(), 14);
    }

    #[test]
    fn unusual_declarations() {
        let text = "name: x\nformat:\n\
            \tfield:__data_loc char[] cmd;\toffset:60;\tsize:4;\tsigned:0;\n\
            \tfield:const char * filename;\toffset:16;\tsize:8;\tsigned:0;\n\
            \tfield:void __seg_gs * ptr;\toffset:24;\tsize:8;\tsigned:0;\n\
            \tfield:unsigned long args[6];\toffset:32;\tsize:48;\tsigned:0;\n\
            \tfield:unsigned long hist[];\toffset:80;\tsize:0;\tsigned:0;\n\
            \tfield:int m[2][3];\toffset:80;\tsize:24;\tsigned:1;\n\
            \tfield:unsigned int nosign;\toffset:104;\tsize:4;\n";
        let fmt = EventFormat::parse(text).unwrap();
        assert_eq!(fmt.id, None);
        assert_eq!(*fmt.field("cmd").unwrap(), f("cmd", "__data_loc char[]", 60, 4, false));
        assert_eq!(fmt.field("filename").unwrap().type_decl, "const char *");
        assert_eq!(fmt.field("ptr").unwrap().type_decl, "void __seg_gs *");
        assert_eq!(fmt.field("args").unwrap().type_decl, "unsigned long[6]");
        assert_eq!(fmt.field("hist").unwrap().type_decl, "unsigned long[]");
        assert_eq!(fmt.field("m").unwrap().type_decl, "int[2][3]");
        assert!(!fmt.field("nosign").unwrap().signed);
    }

    #[test]
    fn missing_field_error_names_event_and_field() {
        let fmt = EventFormat::parse(SYS_ENTER_IOCTL).unwrap();
        let e = fmt.field("nope").unwrap_err().to_string();
        assert_eq!(e, "tracefs: event sys_enter_ioctl has no field 'nope'");
    }

    #[test]
    fn malformed_input() {
        let bad = [
            "",
            "name: x\nID: 1\nformat:\n\nprint fmt: \"\"\n",
            "name: x\nID: abc\nformat:\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n",
            "\tfield:int a;\toffset:x;\tsize:4;\tsigned:1;\n",
            "\tfield:int a;\toffset:0;\tsigned:1;\n",
            "\tfield:int a;\tsize:4;\tsigned:1;\n",
            "\tfield:int a;\toffset:-1;\tsize:4;\tsigned:1;\n",
            "\tfield:int a;\toffset:0;\tsize:99999999999;\tsigned:1;\n",
            "\tfield:int a;\toffset 0;\tsize:4;\tsigned:1;\n",
            "\tfield:a;\toffset:0;\tsize:4;\tsigned:1;\n",
            "\tfield:;\toffset:0;\tsize:4;\tsigned:1;\n",
            "\tfield:int;\toffset:0;\tsize:4;\tsigned:1;\n",
            "\tfield:int 9a;\toffset:0;\tsize:4;\tsigned:1;\n",
            "\tfield:int a];\toffset:0;\tsize:4;\tsigned:1;\n",
            "\tfield:int [4];\toffset:0;\tsize:4;\tsigned:1;\n",
            "\tfield:int a;\toffset:0;\tsize:4;\tsigned:x;\n",
        ];
        for text in bad {
            assert!(EventFormat::parse(text).is_err(), "accepted: {text:?}");
        }
        let e = EventFormat::parse("name: ev\n\tfield:int a;\tsize:4;\n").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("line 2") && msg.contains("no offset"), "{msg}");
    }

    #[test]
    fn read_rejects_path_tricks() {
        assert!(EventFormat::read_in(Path::new("/nonexistent"), "..", "x").is_err());
        assert!(EventFormat::read_in(Path::new("/nonexistent"), "a/b", "x").is_err());
        assert!(EventFormat::read_in(Path::new("/nonexistent"), "syscalls", "").is_err());
    }

    #[test]
    fn read_from_directory() {
        let root = std::env::temp_dir().join(format!("tracefs-test-{}", std::process::id()));
        let dir = root.join("events/nvme/nvme_setup_cmd");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("format"), NVME_SETUP_CMD).unwrap();
        let fmt = EventFormat::read_in(&root, "nvme", "nvme_setup_cmd").unwrap();
        assert_eq!(fmt.name, "nvme:nvme_setup_cmd");
        let e = fmt.field("nope").unwrap_err().to_string();
        assert_eq!(e, "tracefs: event nvme:nvme_setup_cmd has no field 'nope'");
        let e = format!("{:#}", EventFormat::read_in(&root, "nvme", "missing").unwrap_err());
        assert!(e.contains("missing/format"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn live_sys_enter_ioctl() {
        let fmt = match EventFormat::read("syscalls", "sys_enter_ioctl") {
            Ok(f) => f,
            Err(e) => {
                eprintln!("skipping: {e:#}");
                return;
            }
        };
        assert!(fmt.id.is_some());
        assert_eq!(fmt.name, "syscalls:sys_enter_ioctl");
        for name in ["fd", "cmd", "arg"] {
            let fld = fmt.field(name).unwrap();
            assert_eq!(fld.size, 8, "{name}");
            eprintln!("  sys_enter_ioctl.{name}: offset {}", fld.offset);
        }
    }
}
