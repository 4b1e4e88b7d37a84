//! Diagnostics: one problem (or warning) in a policy file, with where, what and why.

use std::fmt;

use serde::Serialize;

/// How bad a diagnostic is: errors make a policy invalid, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding at a 1-based line and column of the policy file.
///
/// `field` is the path of the offending key, e.g. `rules[2].match.opcode` (rule indexes
/// count from 0), empty for problems of the document as a whole (YAML syntax). `file` is
/// set when the policy is a directory of files (which file the position is in); a
/// single-file policy leaves it to the caller, who knows the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    #[serde(skip)]
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(line: usize, column: usize, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: None,
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn warning(line: usize, column: usize, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            file: None,
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The same finding, located in `file`.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// `FILE:LINE:COL: error: FIELD: MESSAGE`, the format compilers use (editors jump to it).
    /// `file` names the policy; a diagnostic that knows its own file (a directory's
    /// member) names that one instead.
    pub fn render(&self, file: &str) -> String {
        format!("{}:{self}", self.file.as_deref().unwrap_or(file))
    }
}

/// `LINE:COL: error: FIELD: MESSAGE` (without the file).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: ", self.line, self.column, self.severity.label())?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let d = Diagnostic::error(12, 9, "rules[2].match.opcode", "unknown opcode 'x'");
        assert_eq!(d.render("p.yaml"), "p.yaml:12:9: error: rules[2].match.opcode: unknown opcode 'x'");
        let w = Diagnostic::warning(1, 1, "", "w");
        assert_eq!(w.to_string(), "1:1: warning: w");
    }
}
