//! `fwctl-guard uninstall`: remove every pinned program, link and map, so nothing of
//! fwctl-guard stays attached. Refused while an agent runs with that pin root.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::{
    config::{Config, DEFAULT_PIN_ROOT},
    kernel::pins::PinRoot,
};

/// `fwctl-guard uninstall`: remove every pinned object under the pin root, so the
/// programs detach. Refused while an agent holds the root.
pub fn run(config_path: &Path, pin_path: Option<&Path>) -> Result<()> {
    let root = match pin_path {
        Some(path) => path.to_path_buf(),
        // No configuration (already purged, or never written): the default root.
        None if !config_path.exists() => PathBuf::from(DEFAULT_PIN_ROOT),
        None => Config::load(config_path)?.pin_path,
    };
    if !root.exists() {
        println!("nothing to remove: {} does not exist", root.display());
        return Ok(());
    }
    let sets = PinRoot::lock(&root)?.remove_all()?;
    println!(
        "removed {} and its {sets} pinned program set(s): nothing of fwctl-guard stays attached",
        root.display()
    );
    Ok(())
}
