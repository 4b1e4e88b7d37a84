//! Policies: the YAML files that say which passthrough commands to allow, audit or deny.
//!
//! This is the front end, pure Rust and free of kernel types: read a file, check it
//! against the schema, resolve every name (classes, drivers, scopes, catalog opcodes,
//! cgroups, devices) to numbers, and warn about rules that can never match. The compiler
//! that turns a [`Policy`] into map contents consumes the types of [`resolved`].
//!
//! - [`yaml`]: the document as a tree of located nodes (YAML syntax errors end here).
//! - [`resolve`]: schema check and name resolution, every error at its line and column.
//! - [`names`]: the vocabulary (class/driver/scope names, opcode catalogs per class).
//! - [`values`]: single values (opcodes, numbers, comm, cgroup, device).
//! - [`lint`]: warnings (shadowed rules, rules that exclude themselves).
//! - [`json_schema`]: the document as types: the JSON Schema and the keys `resolve` takes.
//! - [`dir`]: a policy directory (`policy.d`) merged into one policy.
//! - [`diag`]: the diagnostics.
//! - [`resolved`]: the resolved policy, what [`load`] returns.
//!
//! ```yaml
//! version: 1                 # required, only 1
//! name: fleet-baseline       # required
//! mode: enforce              # required: enforce | audit
//! default: audit             # required: allow | audit | deny
//! on_undecodable: deny       # allow | audit | deny (default: the value of `default`)
//! on_toctou: kill            # log | kill: a payload changed after the decision (default log)
//! rules:                     # ordered; the first match decides
//!   - name: updater-may-format
//!     action: allow
//!     match:                 # every key optional (absent = any); scalar or list (any-of)
//!       class: nvme-admin
//!       opcode: [format-nvm, 0x84]
//!       comm: fwupd
//!       not: { uid: 1000 }   # same keys; the rule matches only if this does not
//! ```

pub mod diag;
pub mod dir;
pub mod json_schema;
pub mod lint;
pub mod names;
pub mod resolve;
pub mod resolved;
pub mod values;
pub mod yaml;

use std::path::Path;

pub use diag::{Diagnostic, Severity};
pub use resolve::Host;
pub use resolved::{Action, CgroupSel, DeviceSel, Match, Mode, OnToctou, OpcodeSel, Policy, Rule};

/// A valid policy and its warnings, or every error (and warning) found.
pub type Outcome = Result<(Policy, Vec<Diagnostic>), Vec<Diagnostic>>;

/// Read, check and resolve the policy in `path` against this host: a file, or a directory
/// whose `*.yaml` files merge into one policy (see [`dir`]).
///
/// An unreadable file is one error at 1:1. Diagnostics of a single file do not name it;
/// those of a directory name their member. Print them with [`Diagnostic::render`].
pub fn load(path: &Path) -> Outcome {
    if path.is_dir() {
        return dir::load(path, &Host::default());
    }
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) => Err(vec![Diagnostic::error(1, 1, "", format!("cannot read {}: {e}", path.display()))]),
    }
}

/// [`load`] for text already read.
pub fn parse(text: &str) -> Outcome {
    parse_with(text, &Host::default())
}

/// [`parse`] with host lookups (cgroup mount) somewhere else; for tests.
pub fn parse_with(text: &str, host: &Host) -> Outcome {
    let root = yaml::parse(text).map_err(|d| vec![d])?;
    let (policy, mut errors) = resolve::resolve(&root, host);
    errors.sort_by_key(|d| (d.line, d.column));
    match policy {
        Some(policy) if errors.is_empty() => {
            let warnings = lint::lint(&policy);
            Ok((policy, warnings))
        }
        _ => Err(errors),
    }
}
