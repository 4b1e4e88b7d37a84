//! bpf-linker, built from its published crate against the nightly toolchain's own
//! libLLVM (no prebuilt binary fits, and Debian ships no matching LLVM).
//!
//! bpf-linker's build script only needs `$LLVM_PREFIX/bin/llvm-config` to exist and
//! `$LLVM_PREFIX/lib/libLLVM.so` to link against, so a prefix in the cache holds an
//! empty (no-op) `llvm-config` script and symlinks to the sysroot's libLLVM. A stamp
//! next to the prefix records which libLLVM the installed binary was built against,
//! so a nightly update (new libLLVM) triggers a rebuild.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Status;
use crate::{cmd, paths};

const VERSION: &str = "0.13.0";

/// Builds and installs bpf-linker unless the one on PATH is [`VERSION`] and the stamp
/// names the current nightly libLLVM.
pub fn ensure(sysroot: &Path) -> Result<Status> {
    let lib = llvm_lib_name(sysroot)?;
    let cache = paths::cache_dir()?;
    let stamp_path = cache.join("bpf-linker.stamp");
    let stamp = stamp_text(&lib);
    let what = format!("bpf-linker {VERSION} on {lib}");

    let version = installed_version();
    let stamped = fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str());
    if version.as_deref() == Some(VERSION) && stamped {
        return Ok(Status::present(what));
    }
    let why = match version {
        None => "not installed".to_string(),
        Some(v) if v != VERSION => format!("found {v}"),
        Some(_) => "not built against this nightly's libLLVM".to_string(),
    };
    println!("setup: building bpf-linker {VERSION} against {lib} ({why}; takes ~2 min)");

    let prefix = make_prefix(&cache, sysroot, &lib)?;
    let feature = format!("llvm-{}", llvm_major(&lib)?);
    cmd::run(
        cmd::cargo()
            .current_dir(&cache) // outside the repo: its .cargo/config.toml must not apply
            .env("LLVM_PREFIX", &prefix)
            .env("RUSTFLAGS", format!("-C link-arg=-Wl,-rpath,{}", sysroot.join("lib").display()))
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .args(["install", "bpf-linker", "--version", VERSION, "--force"])
            .args(["--no-default-features", "--features", &feature, "--locked"]),
    )
    .context("building bpf-linker failed")?;

    match installed_version() {
        Some(v) if v == VERSION => {}
        found => bail!(
            "bpf-linker {VERSION} was installed, but `bpf-linker --version` on PATH gives {found:?}: \
             put cargo's bin directory (~/.cargo/bin or $CARGO_INSTALL_ROOT/bin) first on PATH"
        ),
    }
    fs::write(&stamp_path, &stamp).with_context(|| format!("cannot write {}", stamp_path.display()))?;
    Ok(Status::acted(what))
}

/// What the stamp file holds for a build against `lib`.
fn stamp_text(lib: &str) -> String {
    format!("bpf-linker {VERSION} {lib}\n")
}

/// The version `bpf-linker --version` reports, if it runs.
fn installed_version() -> Option<String> {
    let out = cmd::probe(Command::new("bpf-linker").arg("--version"))?;
    out.split_whitespace().nth(1).map(str::to_owned)
}

/// The file name of the sysroot's `lib/libLLVM.so.*` (e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`).
fn llvm_lib_name(sysroot: &Path) -> Result<String> {
    let dir = sysroot.join("lib");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("libLLVM.so."))
        .collect();
    match names.len() {
        1 => Ok(names.remove(0)),
        0 => bail!("no libLLVM.so.* in {}: the nightly toolchain ships no shared LLVM", dir.display()),
        _ => bail!("several libLLVM.so.* in {}: {names:?}", dir.display()),
    }
}

/// The LLVM major version in a libLLVM file name (`libLLVM.so.22.1-…` → `22`).
fn llvm_major(lib: &str) -> Result<&str> {
    let major = lib
        .strip_prefix("libLLVM.so.")
        .and_then(|rest| rest.split(['.', '-']).next())
        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    major.with_context(|| format!("cannot read an LLVM major version from {lib}"))
}

/// Creates (or repairs) `<cache>/llvm-prefix-<lib>/{bin/llvm-config, lib/libLLVM.so, lib/<lib>}`.
fn make_prefix(cache: &Path, sysroot: &Path, lib: &str) -> Result<PathBuf> {
    let prefix = cache.join(format!("llvm-prefix-{lib}"));
    let bin = prefix.join("bin");
    let libdir = prefix.join("lib");
    for dir in [&bin, &libdir] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let config = bin.join("llvm-config");
    fs::write(&config, "#!/bin/sh\n")
        .and_then(|()| fs::set_permissions(&config, fs::Permissions::from_mode(0o755)))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let target = sysroot.join("lib").join(lib);
    for name in ["libLLVM.so", lib] {
        let link = libdir.join(name);
        if fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
            continue;
        }
        let _ = fs::remove_file(&link);
        symlink(&target, &link).with_context(|| format!("cannot create {}", link.display()))?;
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::llvm_major;

    #[test]
    fn major_from_lib_name() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly").unwrap(), "22");
        assert_eq!(llvm_major("libLLVM.so.23-rust-1.99.0-nightly").unwrap(), "23");
        assert!(llvm_major("libLLVM.so.x").is_err());
    }
}
