//! Builds the eBPF crate (nightly, bpfel target) and places the object in OUT_DIR.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?;
    let ebpf_dir = root.join("fwctl-ebpf");
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    println!("cargo:rerun-if-changed={}", root.join("fwctl-common/src").display());
    aya_build::build_ebpf(
        [Package { name: "fwctl-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        Toolchain::Nightly,
    )
}
