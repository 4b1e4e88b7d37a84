//! `fwctl-guard policy check FILE_OR_DIR...`: validate policy files for a pipeline.
//!
//! A directory is one policy, its `*.yaml` files merged as the agent merges them (see
//! `policy::dir`): each file's own errors and the merged result's are reported, each at
//! its file. To check a folder of alternative policies, name the files. Exit status: 0
//! when every policy is valid (warnings allowed), 1 otherwise.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::policy::{self, diag::Diagnostic, Policy};

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

/// Check one policy (a file or a directory).
pub fn check_file(path: &Path) -> FileReport {
    let display = path.display().to_string();
    match policy::load(path) {
        Ok((policy, warnings)) => {
            FileReport { path: display, valid: true, errors: Vec::new(), warnings, policy: Some(policy) }
        }
        Err(diags) => {
            let (errors, warnings) = diags.into_iter().partition(Diagnostic::is_error);
            FileReport { path: display, valid: false, errors, warnings, policy: None }
        }
    }
}

/// Check every policy in `inputs`.
pub fn check_paths(inputs: &[PathBuf]) -> Vec<FileReport> {
    inputs.iter().map(|path| check_file(path)).collect()
}

/// Every diagnostic as `FILE:LINE:COL: ...`, then one summary line per file.
pub fn render_text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let mut diags: Vec<&Diagnostic> = r.errors.iter().chain(&r.warnings).collect();
        diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
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
