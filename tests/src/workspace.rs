//! Files of the repository the tests read (the README, deploy/, packaging/). Only the
//! host suites use them: the VM guests have no checkout, and what they need is embedded.

use std::path::{Path, PathBuf};

/// `path` (relative to the workspace root) in this checkout.
pub fn file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}
