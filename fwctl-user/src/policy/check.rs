//! `fwctl-guard policy check FILE_OR_DIR...`: validate policy files for a pipeline.
//!
//! A directory stands for its `*.yaml` files in lexical order; each file is checked on
//! its own. Exit status: 0 when every file is valid (warnings allowed), 1 otherwise.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{diag::Diagnostic, Policy};

/// Output format of `policy check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `FILE:LINE:COL: error: FIELD: MESSAGE` lines and a summary per file.
    Text,
    /// One JSON document: `{"files":[{"path","valid","errors":[..],"warnings":[..]}]}`.
    Json,
}

/// The verdict on one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub valid: bool,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    #[serde(skip)]
    pub policy: Option<Policy>,
}

#[derive(Serialize)]
struct Report<'a> {
    files: &'a [FileReport],
}

/// The files `inputs` stand for: files as given, directories as their `*.yaml` files
/// sorted by name. A directory that cannot be listed or holds no policy is an `Err`.
pub fn expand(inputs: &[PathBuf]) -> Vec<Result<PathBuf, (PathBuf, String)>> {
    let mut out = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            out.push(Ok(input.clone()));
            continue;
        }
        let entries = match std::fs::read_dir(input) {
            Ok(entries) => entries,
            Err(e) => {
                out.push(Err((input.clone(), format!("cannot list {}: {e}", input.display()))));
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml") && !p.is_dir())
            .collect();
        files.sort();
        if files.is_empty() {
            out.push(Err((input.clone(), format!("{} holds no *.yaml policy", input.display()))));
        }
        out.extend(files.into_iter().map(Ok));
    }
    out
}

/// Check one file.
pub fn check_file(path: &Path) -> FileReport {
    let display = path.display().to_string();
    match super::load(path) {
        Ok((policy, warnings)) => {
            FileReport { path: display, valid: true, errors: Vec::new(), warnings, policy: Some(policy) }
        }
        Err(diags) => {
            let (errors, warnings) = diags.into_iter().partition(Diagnostic::is_error);
            FileReport { path: display, valid: false, errors, warnings, policy: None }
        }
    }
}

/// Check everything `inputs` stand for.
pub fn check_paths(inputs: &[PathBuf]) -> Vec<FileReport> {
    expand(inputs)
        .into_iter()
        .map(|item| match item {
            Ok(path) => check_file(&path),
            Err((path, message)) => FileReport {
                path: path.display().to_string(),
                valid: false,
                errors: vec![Diagnostic::error(1, 1, "", message)],
                warnings: Vec::new(),
                policy: None,
            },
        })
        .collect()
}

/// Every diagnostic as `FILE:LINE:COL: ...`, then one summary line per file.
pub fn render_text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let mut diags: Vec<&Diagnostic> = r.errors.iter().chain(&r.warnings).collect();
        diags.sort_by_key(|d| (d.line, d.column));
        for d in diags {
            out.push_str(&d.render(&r.path));
            out.push('\n');
        }
        let warnings = plural(r.warnings.len(), "warning");
        match &r.policy {
            Some(p) if r.valid => out.push_str(&format!(
                "{}: ok: policy '{}', mode {}, {}, {warnings}\n",
                r.path,
                p.name,
                p.mode.label(),
                plural(p.rules.len(), "rule")
            )),
            _ => out.push_str(&format!("{}: invalid: {}\n", r.path, plural(r.errors.len(), "error"))),
        }
    }
    out
}

/// `{"files":[...]}`.
pub fn render_json(reports: &[FileReport]) -> String {
    serde_json::to_string_pretty(&Report { files: reports }).expect("reports serialize")
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Check, print to stdout in `format`, and say whether every file is valid.
pub fn run(inputs: &[PathBuf], format: Format) -> bool {
    let reports = check_paths(inputs);
    let text = match format {
        Format::Text => render_text(&reports),
        Format::Json => render_json(&reports) + "\n",
    };
    // A closed pipe (`| head`) is not a reason to panic; the exit status still tells.
    let _ = std::io::stdout().write_all(text.as_bytes());
    reports.iter().all(|r| r.valid)
}
