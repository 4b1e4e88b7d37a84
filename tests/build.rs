//! Builds the 32-bit NVMe passthrough caller (`attacks/nvme32.c`) the compat-ioctl attack
//! test runs; the test embeds it. Freestanding i386, so only gcc with `-m32` is needed (no
//! 32-bit libc). Where that fails the file is left empty and the test reports why.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let source = "attacks/nvme32.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("nvme32");
    let built = Command::new(env::var("CC").unwrap_or_else(|_| "gcc".into()))
        .args(["-m32", "-static", "-nostdlib", "-ffreestanding", "-fno-pic", "-fno-stack-protector", "-O1"])
        .args(["-o"])
        .arg(&out)
        .arg(source)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        println!("cargo:warning=cannot build {source} with gcc -m32: the compat attack test will fail with the reason");
        std::fs::write(&out, b"").expect("OUT_DIR is writable");
    }
}
