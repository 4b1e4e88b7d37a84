//! Minimal reader for the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! **What it is for.** aya has no CO-RE relocations for eBPF programs written in
//! Rust, so our programs cannot hard-code offsets such as `task_struct->files`:
//! they change between kernel builds. At load time the agent parses the kernel's
//! BTF with this module, resolves the byte offsets (and sizes) of the few struct
//! members the programs dereference, and passes them to the programs (globals or a
//! config map). aya 0.14's `Btf` does not expose member offsets, and the existing
//! Rust BTF parsers are LGPL, hence this small std-only parser.
//!
//! The format is the one documented in the kernel's `Documentation/bpf/btf.rst`
//! (`include/uapi/linux/btf.h`): a header (magic `0xeB9F`), a type section of
//! `struct btf_type` records each followed by kind-specific data, and a string
//! section. [`KernelBtf::parse`] makes a single pass over the type section to
//! record where each type id starts (it has to know every kind's trailing-data
//! size to do so); struct names are indexed lazily on the first lookup.
//!
//! **What it is not for.** It is not a general BTF library: it only answers
//! "where is member X of struct Y and how big is it". It does not handle
//! big-endian BTF, split BTF (kernel-module BTF under `/sys/kernel/btf/<module>`,
//! whose ids and strings continue the vmlinux ones), `.BTF.ext`, or BTF embedded
//! in ELF files, and it does not validate the blob the way the kernel's verifier
//! does. It never panics on malformed input: every read is bounds-checked and
//! problems are reported as errors.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
/// `sizeof(struct btf_header)` for version 1; `hdr_len` may be larger.
const BTF_HEADER_MIN_LEN: usize = 24;
/// `sizeof(struct btf_type)`.
const BTF_TYPE_LEN: usize = 12;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Size of a kernel pointer (we only support 64-bit targets).
const POINTER_SIZE: u32 = 8;
/// Bound on typedef/modifier chains and anonymous-member nesting, so that a
/// malformed (cyclic) blob yields an error instead of endless recursion.
const MAX_DEPTH: usize = 64;

fn kind_name(kind: u32) -> &'static str {
    match kind {
        0 => "void",
        KIND_INT => "int",
        KIND_PTR => "pointer",
        KIND_ARRAY => "array",
        KIND_STRUCT => "struct",
        KIND_UNION => "union",
        KIND_ENUM => "enum",
        KIND_FWD => "forward declaration",
        KIND_TYPEDEF => "typedef",
        KIND_VOLATILE => "volatile",
        KIND_CONST => "const",
        KIND_RESTRICT => "restrict",
        KIND_FUNC => "function",
        KIND_FUNC_PROTO => "function prototype",
        KIND_VAR => "variable",
        KIND_DATASEC => "data section",
        KIND_FLOAT => "float",
        KIND_DECL_TAG => "decl tag",
        KIND_TYPE_TAG => "type tag",
        KIND_ENUM64 => "enum64",
        _ => "unknown kind",
    }
}

fn read_u16(data: &[u8], pos: usize) -> Option<u16> {
    let b = data.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32(data: &[u8], pos: usize) -> Option<u32> {
    let b = data.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parsed kernel BTF: the raw blob plus an index of where each type id starts.
pub struct KernelBtf {
    data: Vec<u8>,
    /// Absolute byte range of the type section within `data`.
    types_start: usize,
    /// Absolute byte range of the string section within `data`.
    strs_start: usize,
    strs_end: usize,
    /// `type_pos[id - 1]` is the absolute offset of type `id`'s `struct btf_type`.
    type_pos: Vec<usize>,
    /// Struct name -> ids of every STRUCT (not FWD, not UNION) with that name.
    /// Built on first use.
    structs_by_name: OnceLock<HashMap<String, Vec<u32>>>,
}

impl fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelBtf")
            .field("bytes", &self.data.len())
            .field("types", &self.type_pos.len())
            .field("string_bytes", &(self.strs_end - self.strs_start))
            .finish()
    }
}

/// One decoded `struct btf_type` header.
#[derive(Clone, Copy, Debug)]
struct TypeRef {
    id: u32,
    /// Absolute offset of the record in `data`.
    pos: usize,
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
}

/// A member located inside a struct/union (possibly via anonymous members).
#[derive(Clone, Copy, Debug)]
struct Found {
    /// Bit offset from the start of the outermost struct being searched.
    bit_off: u64,
    type_id: u32,
    /// Bitfield width in bits, 0 when the member is not a bitfield.
    bitfield_bits: u32,
}

impl KernelBtf {
    /// Reads and parses the running kernel's BTF from `/sys/kernel/btf/vmlinux`.
    pub fn from_sysfs() -> Result<Self> {
        Self::from_file(VMLINUX_BTF_PATH).context(
            "kernel BTF is required to resolve struct offsets (kernel built without \
             CONFIG_DEBUG_INFO_BTF?)",
        )
    }

    /// Reads and parses a raw BTF blob from `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&data).with_context(|| format!("parsing BTF from {}", path.display()))
    }

    /// Parses a raw (little-endian, non-split) BTF blob.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < BTF_HEADER_MIN_LEN {
            bail!("BTF: blob is {} bytes, shorter than the {}-byte header", bytes.len(), BTF_HEADER_MIN_LEN);
        }
        let magic = read_u16(bytes, 0).ok_or_else(|| anyhow!("BTF: truncated header"))?;
        if magic != BTF_MAGIC {
            if magic == BTF_MAGIC.swap_bytes() {
                bail!("BTF: big-endian BTF (magic bytes eb 9f) is not supported");
            }
            bail!("BTF: bad magic {magic:#06x}, expected {BTF_MAGIC:#06x}");
        }
        let version = bytes[2];
        if version != 1 {
            bail!("BTF: unsupported version {version} (only version 1 is known)");
        }
        let hdr = |pos: usize| read_u32(bytes, pos).ok_or_else(|| anyhow!("BTF: truncated header"));
        let hdr_len = hdr(4)? as usize;
        let (type_off, type_len) = (hdr(8)? as usize, hdr(12)? as usize);
        let (str_off, str_len) = (hdr(16)? as usize, hdr(20)? as usize);
        if hdr_len < BTF_HEADER_MIN_LEN || hdr_len > bytes.len() {
            bail!("BTF: invalid header length {hdr_len} (blob is {} bytes)", bytes.len());
        }
        let section = |what: &str, off: usize, len: usize| -> Result<(usize, usize)> {
            let start = hdr_len.checked_add(off);
            let end = start.and_then(|s| s.checked_add(len));
            match (start, end) {
                (Some(s), Some(e)) if e <= bytes.len() => Ok((s, e)),
                _ => bail!(
                    "BTF: {what} section (offset {off}, length {len}) extends past the end of \
                     the {}-byte blob (truncated?)",
                    bytes.len()
                ),
            }
        };
        let (types_start, types_end) = section("type", type_off, type_len)?;
        let (strs_start, strs_end) = section("string", str_off, str_len)?;
        if str_len == 0 || bytes[strs_start] != 0 {
            bail!("BTF: string section must start with an empty string");
        }

        // Single pass over the type section: record where each type starts.
        let types = &bytes[types_start..types_end];
        let mut type_pos = Vec::with_capacity(type_len / 24);
        let mut pos = 0usize;
        while pos < types.len() {
            let id = type_pos.len() + 1;
            if types.len() - pos < BTF_TYPE_LEN {
                bail!("BTF: type section truncated in type id {id}");
            }
            let info = read_u32(types, pos + 4).unwrap_or(0);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = match kind {
                KIND_INT => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => 12 * vlen,
                KIND_ENUM => 8 * vlen,
                KIND_FUNC_PROTO => 8 * vlen,
                KIND_VAR => 4,
                KIND_DATASEC => 12 * vlen,
                KIND_DECL_TAG => 4,
                KIND_ENUM64 => 12 * vlen,
                _ => bail!("BTF: unknown type kind {kind} in type id {id}"),
            };
            let next = pos + BTF_TYPE_LEN + extra;
            if next > types.len() {
                bail!(
                    "BTF: type section truncated in type id {id} ({} with {vlen} entries)",
                    kind_name(kind)
                );
            }
            type_pos.push(types_start + pos);
            pos = next;
        }
        if u32::try_from(type_pos.len()).is_err() {
            bail!("BTF: too many types");
        }

        Ok(Self {
            data: bytes.to_vec(),
            types_start,
            strs_start,
            strs_end,
            type_pos,
            structs_by_name: OnceLock::new(),
        })
    }

    /// Number of types (not counting `void`, id 0).
    pub fn type_count(&self) -> usize {
        self.type_pos.len()
    }

    /// Byte offset of `member` in `struct struct_name`.
    ///
    /// Members of anonymous (nameless) struct/union members are found too, with
    /// the anonymous member's offset added. Bitfield members are only accepted if
    /// they start on a byte boundary.
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Result<u32> {
        let found = self.lookup(struct_name, &[member], member)?;
        self.byte_offset(struct_name, member, found.bit_off)
    }

    /// Byte offset of a dotted member path through embedded (non-pointer)
    /// structs/unions, e.g. `("file", "f_path.dentry")`. Typedefs and
    /// const/volatile/restrict qualifiers on the intermediate members are
    /// resolved; traversing a pointer is an error.
    pub fn member_offset_path(&self, struct_name: &str, path: &str) -> Result<u32> {
        let comps: Vec<&str> = path.split('.').collect();
        let found = self.lookup(struct_name, &comps, path)?;
        self.byte_offset(struct_name, path, found.bit_off)
    }

    /// Size in bytes of the type of `member` in `struct struct_name` (typedefs
    /// and qualifiers resolved; pointers are 8; arrays are element size times
    /// element count). `member` may also be a dotted path as accepted by
    /// [`member_offset_path`](Self::member_offset_path). Bitfields are refused.
    pub fn member_size(&self, struct_name: &str, member: &str) -> Result<u32> {
        let comps: Vec<&str> = member.split('.').collect();
        let found = self.lookup(struct_name, &comps, member)?;
        if found.bitfield_bits != 0 {
            bail!(
                "BTF: struct {struct_name} member '{member}' is a {}-bit bitfield; it has no \
                 byte size",
                found.bitfield_bits
            );
        }
        self.type_size(found.type_id)
            .with_context(|| format!("BTF: size of struct {struct_name} member '{member}'"))
    }

    /// Size in bytes of `struct struct_name`.
    pub fn struct_size(&self, struct_name: &str) -> Result<u32> {
        let ids = self.struct_ids(struct_name)?;
        let mut size = None;
        for &id in ids {
            let s = self.ty(id)?.size_or_type;
            match size {
                Some(prev) if prev != s => bail!(
                    "BTF: struct {struct_name} has several definitions with different sizes \
                     ({prev} and {s})"
                ),
                _ => size = Some(s),
            }
        }
        size.ok_or_else(|| anyhow!("BTF: no struct named '{struct_name}'"))
    }

    // ---- internals ----------------------------------------------------------

    fn byte_offset(&self, struct_name: &str, member: &str, bit_off: u64) -> Result<u32> {
        if !bit_off.is_multiple_of(8) {
            bail!(
                "BTF: struct {struct_name} member '{member}' is a bitfield at bit offset \
                 {bit_off}, not byte-aligned"
            );
        }
        u32::try_from(bit_off / 8)
            .map_err(|_| anyhow!("BTF: struct {struct_name} member '{member}' has an implausible offset"))
    }

    /// Ids of all STRUCT-kind types named `name` (FWD declarations and unions
    /// are skipped).
    fn struct_ids(&self, name: &str) -> Result<&[u32]> {
        let index = self.structs_by_name.get_or_init(|| {
            let mut map: HashMap<String, Vec<u32>> = HashMap::new();
            for id in 1..=self.type_pos.len() as u32 {
                let Ok(t) = self.ty(id) else { continue };
                if t.kind != KIND_STRUCT || t.name_off == 0 {
                    continue;
                }
                if let Ok(n) = self.name(t.name_off) {
                    map.entry(n.to_owned()).or_default().push(id);
                }
            }
            map
        });
        match index.get(name) {
            Some(ids) => Ok(ids),
            None => bail!("BTF: no struct named '{name}'"),
        }
    }

    /// Resolves `comps` (a member path) in every definition of
    /// `struct struct_name`; all definitions that have the member must agree.
    fn lookup(&self, struct_name: &str, comps: &[&str], path: &str) -> Result<Found> {
        let ids = self.struct_ids(struct_name)?;
        let mut result: Option<Found> = None;
        for &id in ids {
            let Some(found) = self.resolve_path(id, struct_name, comps, path)? else {
                continue;
            };
            match result {
                Some(prev) if prev.bit_off != found.bit_off => bail!(
                    "BTF: struct {struct_name} has several definitions that disagree on the \
                     offset of '{path}' (bit {} vs {})",
                    prev.bit_off,
                    found.bit_off
                ),
                Some(_) => {}
                None => result = Some(found),
            }
        }
        result.ok_or_else(|| {
            anyhow!("BTF: struct {struct_name} has no member '{}'", comps.first().unwrap_or(&""))
        })
    }

    /// Walks `comps` from struct `root`. `Ok(None)` means the first component is
    /// not a member of `root`; failures further down the path are errors.
    fn resolve_path(
        &self,
        root: u32,
        struct_name: &str,
        comps: &[&str],
        path: &str,
    ) -> Result<Option<Found>> {
        let mut container = root;
        let mut total: u64 = 0;
        let mut last: Option<Found> = None;
        for (i, comp) in comps.iter().enumerate() {
            if comp.is_empty() {
                bail!("BTF: empty component in member path '{path}' of struct {struct_name}");
            }
            let prefix = comps[..i].join(".");
            if let Some(prev) = last {
                if prev.bitfield_bits != 0 {
                    bail!("BTF: struct {struct_name}: '{prefix}' is a bitfield (path '{path}')");
                }
                let t = self.skip_modifiers(prev.type_id)?;
                match t.kind {
                    KIND_STRUCT | KIND_UNION => container = t.id,
                    KIND_PTR => bail!(
                        "BTF: struct {struct_name}: '{prefix}' is a pointer; member paths only \
                         go through embedded structs (path '{path}')"
                    ),
                    k => bail!(
                        "BTF: struct {struct_name}: '{prefix}' is a {}, not a struct or union \
                         (path '{path}')",
                        kind_name(k)
                    ),
                }
            }
            let found = match self.find_member(container, comp, 0)? {
                Some(f) => f,
                None if i == 0 => return Ok(None),
                None => bail!("BTF: struct {struct_name}: '{prefix}' has no member '{comp}' (path '{path}')"),
            };
            total += found.bit_off;
            last = Some(Found { bit_off: total, ..found });
        }
        Ok(last)
    }

    /// Finds member `name` in struct/union `id`, descending into anonymous
    /// struct/union members. The returned offset is relative to `id`.
    fn find_member(&self, id: u32, name: &str, depth: usize) -> Result<Option<Found>> {
        if depth > MAX_DEPTH {
            bail!("BTF: anonymous members nested too deeply under type id {id} (cycle?)");
        }
        let t = self.ty(id)?;
        if t.kind != KIND_STRUCT && t.kind != KIND_UNION {
            bail!("BTF: type id {id} is a {}, not a struct or union", kind_name(t.kind));
        }
        for i in 0..t.vlen as usize {
            let m = t.pos + BTF_TYPE_LEN + 12 * i;
            let (m_name, m_type, m_off) =
                match (read_u32(&self.data, m), read_u32(&self.data, m + 4), read_u32(&self.data, m + 8)) {
                    (Some(a), Some(b), Some(c)) => (a, b, c),
                    _ => bail!("BTF: member {i} of type id {id} is out of bounds"),
                };
            let (bit_off, bitfield_bits) =
                if t.kind_flag { (m_off & 0x00ff_ffff, m_off >> 24) } else { (m_off, 0) };
            if m_name == 0 {
                let inner = self.skip_modifiers(m_type)?;
                if inner.kind == KIND_STRUCT || inner.kind == KIND_UNION {
                    if let Some(f) = self.find_member(inner.id, name, depth + 1)? {
                        return Ok(Some(Found { bit_off: u64::from(bit_off) + f.bit_off, ..f }));
                    }
                }
                continue;
            }
            if self.name(m_name)? != name {
                continue;
            }
            let bitfield_bits = if bitfield_bits == 0 && !t.kind_flag {
                // Without kind_flag a bitfield is encoded in the int type itself.
                self.int_bitfield_bits(m_type)?
            } else {
                bitfield_bits
            };
            return Ok(Some(Found { bit_off: u64::from(bit_off), type_id: m_type, bitfield_bits }));
        }
        Ok(None)
    }

    /// For a non-kind_flag member of int type: its bit width if that is not the
    /// full int (i.e. it is a bitfield), else 0.
    fn int_bitfield_bits(&self, type_id: u32) -> Result<u32> {
        let t = self.skip_modifiers(type_id)?;
        if t.kind != KIND_INT {
            return Ok(0);
        }
        let enc = read_u32(&self.data, t.pos + BTF_TYPE_LEN)
            .ok_or_else(|| anyhow!("BTF: int type id {} is truncated", t.id))?;
        let bits = enc & 0xff;
        let int_off = (enc >> 16) & 0xff;
        if int_off != 0 || u64::from(bits) != u64::from(t.size_or_type) * 8 {
            Ok(bits.max(1))
        } else {
            Ok(0)
        }
    }

    /// Follows typedef/volatile/const/restrict/type-tag links to the underlying type.
    fn skip_modifiers(&self, mut id: u32) -> Result<TypeRef> {
        for _ in 0..MAX_DEPTH {
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok(t),
            }
        }
        bail!("BTF: typedef/qualifier chain too long at type id {id} (cycle?)")
    }

    fn type_size(&self, id: u32) -> Result<u32> {
        let mut id = id;
        // Array chains (multi-dimensional arrays) multiply up.
        let mut multiplier: u64 = 1;
        for _ in 0..MAX_DEPTH {
            let t = self.skip_modifiers(id)?;
            let size = match t.kind {
                KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_STRUCT | KIND_UNION | KIND_FLOAT => t.size_or_type,
                KIND_PTR => POINTER_SIZE,
                KIND_ARRAY => {
                    let base = t.pos + BTF_TYPE_LEN;
                    let (elem, nelems) = match (read_u32(&self.data, base), read_u32(&self.data, base + 8)) {
                        (Some(e), Some(n)) => (e, n),
                        _ => bail!("BTF: array type id {} is truncated", t.id),
                    };
                    multiplier = multiplier
                        .checked_mul(u64::from(nelems))
                        .ok_or_else(|| anyhow!("BTF: array type id {} is too large", t.id))?;
                    id = elem;
                    continue;
                }
                k => bail!("BTF: type id {} is a {}, which has no size", t.id, kind_name(k)),
            };
            let total = multiplier
                .checked_mul(u64::from(size))
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| anyhow!("BTF: type id {id} is too large"))?;
            return Ok(total);
        }
        bail!("BTF: array chain too long at type id {id} (cycle?)")
    }

    fn ty(&self, id: u32) -> Result<TypeRef> {
        if id == 0 {
            bail!("BTF: type id 0 is void");
        }
        let pos = *self
            .type_pos
            .get(id as usize - 1)
            .ok_or_else(|| anyhow!("BTF: type id {id} out of range ({} types)", self.type_pos.len()))?;
        debug_assert!(pos >= self.types_start);
        let (name_off, info, size_or_type) =
            match (read_u32(&self.data, pos), read_u32(&self.data, pos + 4), read_u32(&self.data, pos + 8)) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => bail!("BTF: type id {id} is out of bounds"),
            };
        Ok(TypeRef {
            id,
            pos,
            name_off,
            kind: (info >> 24) & 0x1f,
            vlen: info & 0xffff,
            kind_flag: info >> 31 == 1,
            size_or_type,
        })
    }

    fn name(&self, off: u32) -> Result<&str> {
        let strs = &self.data[self.strs_start..self.strs_end];
        let start = off as usize;
        let rest = strs
            .get(start..)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| anyhow!("BTF: string offset {off} out of range"))?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| anyhow!("BTF: string at offset {off} is not NUL-terminated"))?;
        std::str::from_utf8(&rest[..len])
            .map_err(|_| anyhow!("BTF: string at offset {off} is not valid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Encodes a synthetic BTF blob.
    struct Builder {
        types: Vec<u8>,
        strs: Vec<u8>,
        next_id: u32,
        hdr_len: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self { types: Vec::new(), strs: vec![0], next_id: 1, hdr_len: 24 }
        }
        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strs.len() as u32;
            self.strs.extend_from_slice(name.as_bytes());
            self.strs.push(0);
            off
        }
        fn u32s(&mut self, vals: &[u32]) {
            for v in vals {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
        }
        /// Common `struct btf_type`; returns the new type's id.
        fn ty(&mut self, name: &str, kind: u32, kflag: bool, vlen: u32, size_or_type: u32) -> u32 {
            let n = self.s(name);
            let info = (u32::from(kflag) << 31) | (kind << 24) | vlen;
            self.u32s(&[n, info, size_or_type]);
            let id = self.next_id;
            self.next_id += 1;
            id
        }
        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.ty(name, KIND_INT, false, 0, size);
            self.u32s(&[(1 << 24) | (size * 8)]);
            id
        }
        /// `members`: (name, type, raw offset field).
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            kflag: bool,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.ty(name, kind, kflag, members.len() as u32, size);
            for &(mname, mtype, moff) in members {
                let n = self.s(mname);
                self.u32s(&[n, mtype, moff]);
            }
            id
        }
        fn blob(&self) -> Vec<u8> {
            let hdr_len = self.hdr_len;
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.push(1); // version
            out.push(0); // flags
            let type_len = self.types.len() as u32;
            for v in [hdr_len, 0, type_len, type_len, self.strs.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.resize(hdr_len as usize, 0);
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strs);
            out
        }
    }

    /// A blob exercising every kind, an anonymous union holding an anonymous
    /// struct, embedded/typedef'd/const structs, a pointer, an array, bitfields.
    ///
    /// ```c
    /// struct inner { int a; long b; };                 // 16 bytes
    /// typedef struct inner inner_t;
    /// struct outer {                                   // kind_flag = 1
    ///     int x;                       // 0
    ///     union {                      // 8
    ///         int u_int;               // 8
    ///         struct { int s_pad; long deep; };  // deep @ 16
    ///     };
    ///     struct inner emb;            // 24
    ///     struct inner *p;             // 40
    ///     const inner_t ci;            // 48
    ///     int arr[4];                  // 64
    ///     int bf3 : 3;                 // bit 642 (unaligned)
    ///     int bf8 : 8;                 // bit 648 = byte 81
    ///     volatile unsigned long long v; // 88
    /// };
    /// ```
    fn sample() -> Builder {
        let mut b = Builder::new();
        // Leading types of every "other" kind, to check the walk over trailing data.
        let int = b.int("int", 4); // 1
        let enum_id = b.ty("e", KIND_ENUM, false, 2, 4); // 2
        let (x, y) = (b.s("E_A"), b.s("E_B"));
        b.u32s(&[x, 0, y, 1]);
        let proto = b.ty("", KIND_FUNC_PROTO, false, 2, int); // 3
        let p = b.s("arg");
        b.u32s(&[p, int, 0, 0]);
        b.ty("func", KIND_FUNC, false, 0, proto); // 4
        let var = b.ty("var", KIND_VAR, false, 0, int); // 5
        b.u32s(&[1]);
        b.ty(".data", KIND_DATASEC, false, 1, 4); // 6
        b.u32s(&[var, 0, 4]);
        b.ty("double", KIND_FLOAT, false, 0, 8); // 7
        b.ty("tag", KIND_DECL_TAG, false, 0, var); // 8
        b.u32s(&[u32::MAX]);
        b.ty("rcu", KIND_TYPE_TAG, false, 0, int); // 9
        b.ty("e64", KIND_ENUM64, false, 1, 8); // 10
        let z = b.s("E64_A");
        b.u32s(&[z, 1, 2]);
        b.ty("", KIND_RESTRICT, false, 0, int); // 11
        b.ty("outer", KIND_FWD, false, 0, 0); // 12: forward decl, must be skipped
        let _ = enum_id;

        let long = b.int("long", 8);
        let inner = b.composite(KIND_STRUCT, "inner", false, 16, &[("a", int, 0), ("b", long, 64)]);
        let ptr = b.ty("", KIND_PTR, false, 0, inner);
        let anon_s = b.composite(KIND_STRUCT, "", false, 16, &[("s_pad", int, 0), ("deep", long, 64)]);
        let anon_u = b.composite(KIND_UNION, "", false, 16, &[("u_int", int, 0), ("", anon_s, 0)]);
        let td = b.ty("inner_t", KIND_TYPEDEF, false, 0, inner);
        let cst = b.ty("", KIND_CONST, false, 0, td);
        let u32_t = b.int("unsigned int", 4);
        let arr = b.ty("", KIND_ARRAY, false, 0, 0);
        b.u32s(&[int, u32_t, 4]);
        let ull = b.int("unsigned long long", 8);
        let vol = b.ty("", KIND_VOLATILE, false, 0, ull);
        b.composite(
            KIND_STRUCT,
            "outer",
            true,
            96,
            &[
                ("x", int, 0),
                ("", anon_u, 64),
                ("emb", inner, 192),
                ("p", ptr, 320),
                ("ci", cst, 384),
                ("arr", arr, 512),
                ("bf3", int, (3 << 24) | 642),
                ("bf8", int, (8 << 24) | 648),
                ("v", vol, 704),
            ],
        );
        // A union with a struct-like name: member_offset must not use it.
        b.composite(KIND_UNION, "just_a_union", false, 4, &[("m", int, 0)]);
        // Old-style (no kind_flag) bitfield: int type with 4 bits.
        let int4 = b.ty("int", KIND_INT, false, 0, 4);
        b.u32s(&[(1 << 24) | 4]);
        b.composite(KIND_STRUCT, "oldbf", false, 8, &[("lo", int4, 0), ("hi", int4, 4), ("w", int, 32)]);
        // Two definitions of one name that agree, and two that disagree.
        b.composite(KIND_STRUCT, "dup", false, 8, &[("a", int, 0), ("b", int, 32)]);
        b.composite(KIND_STRUCT, "dup", false, 8, &[("a", int, 0)]);
        b.composite(KIND_STRUCT, "clash", false, 8, &[("a", int, 0)]);
        b.composite(KIND_STRUCT, "clash", false, 8, &[("a", int, 32)]);
        b
    }

    fn parsed() -> KernelBtf {
        KernelBtf::parse(&sample().blob()).expect("sample BTF parses")
    }

    #[test]
    fn walks_every_kind() {
        let btf = parsed();
        assert_eq!(btf.type_count(), sample().next_id as usize - 1);
    }

    #[test]
    fn offsets_of_direct_members() {
        let btf = parsed();
        assert_eq!(btf.member_offset("inner", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("inner", "b").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "x").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "emb").unwrap(), 24);
        assert_eq!(btf.member_offset("outer", "p").unwrap(), 40);
        assert_eq!(btf.member_offset("outer", "ci").unwrap(), 48);
        assert_eq!(btf.member_offset("outer", "arr").unwrap(), 64);
        assert_eq!(btf.member_offset("outer", "v").unwrap(), 88);
        assert_eq!(btf.struct_size("outer").unwrap(), 96);
    }

    #[test]
    fn offsets_through_anonymous_members() {
        let btf = parsed();
        assert_eq!(btf.member_offset("outer", "u_int").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "s_pad").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "deep").unwrap(), 16);
        assert_eq!(btf.member_size("outer", "deep").unwrap(), 8);
    }

    #[test]
    fn dotted_paths() {
        let btf = parsed();
        assert_eq!(btf.member_offset_path("outer", "emb.b").unwrap(), 32);
        assert_eq!(btf.member_offset_path("outer", "ci.a").unwrap(), 48);
        assert_eq!(btf.member_offset_path("outer", "ci.b").unwrap(), 56);
        assert_eq!(btf.member_offset_path("outer", "x").unwrap(), 0);
        assert_eq!(btf.member_offset_path("outer", "deep").unwrap(), 16);
        assert_eq!(btf.member_size("outer", "ci.b").unwrap(), 8);

        let e = btf.member_offset_path("outer", "p.a").unwrap_err().to_string();
        assert!(e.contains("'p' is a pointer"), "{e}");
        let e = btf.member_offset_path("outer", "x.y").unwrap_err().to_string();
        assert!(e.contains("'x' is a int, not a struct"), "{e}");
        let e = btf.member_offset_path("outer", "emb.zz").unwrap_err().to_string();
        assert!(e.contains("'emb' has no member 'zz'"), "{e}");
        let e = btf.member_offset_path("outer", "nope.a").unwrap_err().to_string();
        assert_eq!(e, "BTF: struct outer has no member 'nope'");
        assert!(btf.member_offset_path("outer", "emb.").is_err());
        assert!(btf.member_offset_path("outer", "").is_err());
    }

    #[test]
    fn member_sizes() {
        let btf = parsed();
        assert_eq!(btf.member_size("outer", "x").unwrap(), 4);
        assert_eq!(btf.member_size("outer", "p").unwrap(), 8);
        assert_eq!(btf.member_size("outer", "emb").unwrap(), 16);
        assert_eq!(btf.member_size("outer", "ci").unwrap(), 16);
        assert_eq!(btf.member_size("outer", "arr").unwrap(), 16);
        assert_eq!(btf.member_size("outer", "v").unwrap(), 8);
        let e = btf.member_size("outer", "bf8").unwrap_err().to_string();
        assert!(e.contains("8-bit bitfield"), "{e}");
    }

    #[test]
    fn bitfields() {
        let btf = parsed();
        // Byte-aligned bitfield: offset is usable.
        assert_eq!(btf.member_offset("outer", "bf8").unwrap(), 81);
        let e = btf.member_offset("outer", "bf3").unwrap_err().to_string();
        assert!(e.contains("bf3") && e.contains("not byte-aligned"), "{e}");
        // Old encoding (bit width in the int type).
        let e = btf.member_offset("oldbf", "hi").unwrap_err().to_string();
        assert!(e.contains("not byte-aligned"), "{e}");
        assert_eq!(btf.member_offset("oldbf", "lo").unwrap(), 0);
        assert!(btf.member_size("oldbf", "lo").is_err());
        assert_eq!(btf.member_offset("oldbf", "w").unwrap(), 4);
        assert_eq!(btf.member_size("oldbf", "w").unwrap(), 4);
    }

    #[test]
    fn unknown_struct_and_member() {
        let btf = parsed();
        let e = btf.member_offset("nope", "x").unwrap_err().to_string();
        assert_eq!(e, "BTF: no struct named 'nope'");
        // Only STRUCT kinds count: unions and FWDs are not structs.
        assert!(btf.member_offset("just_a_union", "m").is_err());
        let e = btf.member_offset("outer", "files").unwrap_err().to_string();
        assert_eq!(e, "BTF: struct outer has no member 'files'");
        // Names of anonymous members' parents are not members themselves.
        assert!(btf.member_offset("outer", "").is_err());
    }

    #[test]
    fn duplicate_definitions() {
        let btf = parsed();
        assert_eq!(btf.member_offset("dup", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("dup", "b").unwrap(), 4);
        let e = btf.member_offset("clash", "a").unwrap_err().to_string();
        assert!(e.contains("disagree"), "{e}");
    }

    #[test]
    fn extended_header_is_accepted() {
        let mut b = sample();
        b.hdr_len = 32;
        let btf = KernelBtf::parse(&b.blob()).unwrap();
        assert_eq!(btf.member_offset("outer", "deep").unwrap(), 16);
    }

    #[test]
    fn truncated_blobs_are_errors() {
        let blob = sample().blob();
        for len in 0..blob.len() {
            assert!(KernelBtf::parse(&blob[..len]).is_err(), "prefix of {len} bytes parsed");
        }
        let e = KernelBtf::parse(&blob[..10]).unwrap_err().to_string();
        assert!(e.contains("shorter than"), "{e}");
        let e = KernelBtf::parse(&blob[..blob.len() - 1]).unwrap_err().to_string();
        assert!(e.contains("string section") && e.contains("past the end"), "{e}");
    }

    #[test]
    fn type_section_truncated_mid_record() {
        let mut b = sample();
        b.types.truncate(b.types.len() - 4);
        let e = KernelBtf::parse(&b.blob()).unwrap_err().to_string();
        assert!(e.contains("type section truncated"), "{e}");
    }

    #[test]
    fn bad_magic_and_version() {
        let mut blob = sample().blob();
        blob[0] = 0x00;
        let e = KernelBtf::parse(&blob).unwrap_err().to_string();
        assert!(e.contains("bad magic"), "{e}");
        blob[0] = 0xeb;
        blob[1] = 0x9f;
        let e = KernelBtf::parse(&blob).unwrap_err().to_string();
        assert!(e.contains("big-endian"), "{e}");
        let mut blob = sample().blob();
        blob[2] = 2;
        assert!(KernelBtf::parse(&blob).unwrap_err().to_string().contains("version"));
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let mut b = Builder::new();
        b.int("int", 4);
        b.ty("weird", 31, false, 0, 0);
        let e = KernelBtf::parse(&b.blob()).unwrap_err().to_string();
        assert!(e.contains("unknown type kind 31"), "{e}");
    }

    #[test]
    fn malformed_references_do_not_panic() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        // Member pointing at a nonexistent type, a typedef cycle, an anonymous
        // member that contains its own struct, an out-of-range name offset.
        let td1 = b.ty("t1", KIND_TYPEDEF, false, 0, 3);
        b.ty("t2", KIND_TYPEDEF, false, 0, td1); // id 3
        b.composite(
            KIND_STRUCT,
            "bad",
            false,
            8,
            &[("dangling", 999, 0), ("cyc", td1, 0), ("", 5, 32), ("ok", int, 32)],
        ); // id 4
        b.composite(KIND_STRUCT, "", false, 8, &[("", 5, 0)]); // id 5: self-containing
        b.composite(KIND_STRUCT, "bad_name", false, 4, &[]);
        b.u32s(&[]);
        let btf = KernelBtf::parse(&b.blob()).unwrap();
        assert!(btf.member_size("bad", "dangling").is_err());
        assert!(btf.member_size("bad", "cyc").is_err());
        assert!(btf.member_offset_path("bad", "cyc.x").is_err());
        // The self-containing anonymous struct is hit before "ok".
        assert!(btf.member_offset("bad", "ok").is_err());
    }

    #[test]
    fn corrupted_blobs_do_not_panic() {
        let blob = sample().blob();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut bad = blob.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % bad.len();
                bad[i] = next() as u8;
            }
            if let Ok(btf) = KernelBtf::parse(&bad) {
                for (s, m) in [("outer", "deep"), ("outer", "ci.b"), ("oldbf", "hi"), ("inner", "b")] {
                    let _ = btf.member_offset(s, m);
                    let _ = btf.member_offset_path(s, m);
                    let _ = btf.member_size(s, m);
                    let _ = btf.struct_size(s);
                }
            }
        }
    }

    #[test]
    fn real_vmlinux() {
        if !Path::new(VMLINUX_BTF_PATH).exists() {
            eprintln!("skipping: {VMLINUX_BTF_PATH} not present");
            return;
        }
        let data = std::fs::read(VMLINUX_BTF_PATH).unwrap();
        let t0 = Instant::now();
        let btf = KernelBtf::parse(&data).unwrap();
        let parse = t0.elapsed();
        let t1 = Instant::now();
        let files = btf.member_offset("task_struct", "files").unwrap();
        let first_lookup = t1.elapsed();
        eprintln!(
            "vmlinux BTF: {} bytes, {} types, parse {parse:?}, first lookup (builds name index) \
             {first_lookup:?}",
            data.len(),
            btf.type_count()
        );
        let t2 = Instant::now();
        let from_sysfs = KernelBtf::from_sysfs().unwrap();
        eprintln!("from_sysfs (read + parse): {:?}", t2.elapsed());
        assert_eq!(from_sysfs.type_count(), btf.type_count());

        let task_size = btf.struct_size("task_struct").unwrap();
        assert!(files > 0 && files < task_size);
        let checks: &[(&str, &str, &[u32])] = &[
            ("task_struct", "files", &[8]),
            ("task_struct", "pid", &[4]),
            ("task_struct", "tgid", &[4]),
            ("files_struct", "fdt", &[8]),
            ("fdtable", "max_fds", &[4]),
            ("fdtable", "fd", &[8]),
            ("file", "f_inode", &[8]),
            ("inode", "i_rdev", &[4]),
            ("inode", "i_mode", &[2]),
            ("file", "f_path", &[16]),
        ];
        for &(s, m, sizes) in checks {
            let off = btf.member_offset(s, m).unwrap();
            let size = btf.member_size(s, m).unwrap();
            let total = btf.struct_size(s).unwrap();
            eprintln!("  {s}.{m}: offset {off}, size {size} (struct size {total})");
            assert!(off + size <= total, "{s}.{m} lies outside the struct");
            assert!(sizes.contains(&size), "{s}.{m} has unexpected size {size}");
            assert!(off.is_multiple_of(size.min(8)), "{s}.{m} is misaligned");
        }
        assert_eq!(btf.member_offset("fdtable", "max_fds").unwrap(), 0);
        assert_eq!(btf.member_offset("fdtable", "fd").unwrap(), 8);
        assert_eq!(btf.member_offset("inode", "i_mode").unwrap(), 0);
        assert_eq!(
            btf.member_offset("task_struct", "tgid").unwrap(),
            btf.member_offset("task_struct", "pid").unwrap() + 4
        );
        let dentry = btf.member_offset_path("file", "f_path.dentry").unwrap();
        assert_eq!(
            dentry,
            btf.member_offset("file", "f_path").unwrap() + btf.member_offset("path", "dentry").unwrap()
        );
        eprintln!("  file.f_path.dentry: offset {dentry}");
        let e = btf.member_offset("task_struct", "no_such_member").unwrap_err().to_string();
        assert_eq!(e, "BTF: struct task_struct has no member 'no_such_member'");
    }
}
