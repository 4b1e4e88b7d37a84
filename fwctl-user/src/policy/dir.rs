//! A policy directory (`policy.d`): its `*.yaml` files merged, in lexical order, into one
//! policy.
//!
//! - Rules are concatenated in file order; the first match decides, so a rule in
//!   `10-site.yaml` takes precedence over one in `50-team.yaml`.
//! - Header keys (`name`, `mode`, `default`, `on_undecodable`, `on_toctou`) may each be set
//!   in one file only: a second file setting one is an error naming both places. A later
//!   file silently switching `mode: enforce` to `audit` is what a drop-in must not be able
//!   to do. `name`, `mode` and `default` must be set by some file.
//! - Every file carries `version: 1` (it is the format of that file).
//! - Rule names are unique across the directory.
//!
//! Members: regular files whose name ends in `.yaml` and does not start with `.`, sorted by
//! the bytes of their names (`dpkg`'s `.dpkg-new`/`.dpkg-old` and editors' backups are
//! not members). Every diagnostic names the member it is in.

use std::{
    collections::HashMap,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::{
    diag::Diagnostic,
    lint,
    resolve::{self, Host, Part, HEADER_REQUIRED},
    yaml, Outcome,
};

/// The member files of `dir`, in merge order.
pub fn members(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if bytes.starts_with(b".") || !bytes.ends_with(b".yaml") {
            continue;
        }
        // Follows symlinks: a link to a file is a member, a link to a directory is not.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort_by(|a, b| a.file_name().map(|n| n.as_bytes()).cmp(&b.file_name().map(|n| n.as_bytes())));
    Ok(files)
}

/// Read, check and merge the policy directory `dir`.
pub fn load(dir: &Path, host: &Host) -> Outcome {
    let shown = dir.display().to_string();
    let files =
        members(dir).map_err(|e| vec![Diagnostic::error(1, 1, "", format!("cannot list {shown}: {e}"))])?;
    if files.is_empty() {
        return Err(vec![Diagnostic::error(1, 1, "", format!("{shown} holds no *.yaml policy file"))]);
    }
    let mut errors = Vec::new();
    let mut parts: Vec<(String, Part)> = Vec::new();
    for path in &files {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(Diagnostic::error(1, 1, "", format!("cannot read {file}: {e}")).in_file(&file));
                continue;
            }
        };
        let root = match yaml::parse(&text) {
            Ok(root) => root,
            Err(d) => {
                errors.push(d.in_file(&file));
                continue;
            }
        };
        let (part, diags) = resolve::resolve_part(&root, host, false);
        errors.extend(diags.into_iter().map(|d| d.in_file(&file)));
        if let Some(mut part) = part {
            for rule in &mut part.rules {
                rule.file = Some(file.clone());
            }
            parts.push((file, part));
        }
    }
    let merged = merge(parts, &shown, &mut errors);
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    match merged {
        Some(policy) if errors.is_empty() => {
            let warnings = lint::lint(&policy);
            Ok((policy, warnings))
        }
        _ => Err(errors),
    }
}

/// One policy from the parts of a directory, in order; conflicts go to `errors`.
fn merge(parts: Vec<(String, Part)>, dir: &str, errors: &mut Vec<Diagnostic>) -> Option<super::Policy> {
    let mut header_at: HashMap<&'static str, (String, usize, usize)> = HashMap::new();
    let mut rule_at: HashMap<String, (String, usize)> = HashMap::new();
    let mut merged = Part { header: Default::default(), rules: Vec::new() };
    for (file, part) in parts {
        for (key, line, column) in part.header.positions() {
            if let Some((first, l, c)) = header_at.get(key) {
                errors.push(
                    Diagnostic::error(
                        line,
                        column,
                        key,
                        format!(
                            "'{key}' is already set in {first}:{l}:{c}; a header key may be set in only one \
                             file of a policy directory (edit that file instead of overriding it)"
                        ),
                    )
                    .in_file(&file),
                );
            } else {
                header_at.insert(key, (file.clone(), line, column));
            }
        }
        let h = part.header;
        let m = &mut merged.header;
        m.name = m.name.take().or(h.name);
        m.mode = m.mode.take().or(h.mode);
        m.default = m.default.take().or(h.default);
        m.on_undecodable = m.on_undecodable.take().or(h.on_undecodable);
        m.on_toctou = m.on_toctou.take().or(h.on_toctou);
        for (i, rule) in part.rules.into_iter().enumerate() {
            if let Some((first, line)) = rule_at.get(&rule.name) {
                errors.push(
                    Diagnostic::error(
                        rule.line,
                        rule.column,
                        format!("rules[{i}].name"),
                        format!(
                            "duplicate rule name '{}' (first used by the rule at {first}:{line})",
                            rule.name
                        ),
                    )
                    .in_file(&file),
                );
                continue;
            }
            rule_at.insert(rule.name.clone(), (file.clone(), rule.line));
            merged.rules.push(rule);
        }
    }
    let mut missing = Vec::new();
    let policy = merged.into_policy(&mut missing);
    for key in missing {
        errors.push(
            Diagnostic::error(
                1,
                1,
                key,
                format!(
                    "no file of the directory sets '{key}'; one file must set {}",
                    HEADER_REQUIRED.join(", ")
                ),
            )
            .in_file(dir),
        );
    }
    policy
}
