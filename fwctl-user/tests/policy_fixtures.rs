//! Policy files on disk: every bad fixture yields exactly the diagnostics its
//! `# expect:` lines list (position, severity, field, message fragment), the warning
//! fixtures are valid with their warnings, the shipped policies are clean, and
//! `fwctl-guard policy check` reports them with the right exit status and JSON.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use fwctl_user::policy::{self, Diagnostic, Severity};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", root.display());
    files
}

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    ["default.yaml", "fleet-baseline.yaml", "strict.yaml"].iter().map(|f| dir.join(f)).collect()
}

/// One `# expect: LINE:COL SEVERITY FIELD: FRAGMENT` line (`-` = no field).
#[derive(Debug)]
struct Expected {
    line: usize,
    column: usize,
    severity: Severity,
    field: String,
    fragment: String,
}

fn expectations(path: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(path).unwrap();
    let out: Vec<Expected> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|l| {
            let (position, rest) = l.split_once(' ').unwrap();
            let (line, column) = position.split_once(':').unwrap();
            let (severity, rest) = rest.split_once(' ').unwrap();
            let (field, fragment) = rest.split_once(": ").unwrap();
            Expected {
                line: line.parse().unwrap(),
                column: column.parse().unwrap(),
                severity: if severity == "error" { Severity::Error } else { Severity::Warning },
                field: if field == "-" { String::new() } else { field.to_string() },
                fragment: fragment.to_string(),
            }
        })
        .collect();
    assert!(!out.is_empty(), "{}: no `# expect:` lines", path.display());
    out
}

fn assert_diagnostics(path: &Path, got: &[Diagnostic]) {
    let expected = expectations(path);
    let shown = got.iter().map(|d| d.render(&path.display().to_string())).collect::<Vec<_>>().join("\n");
    for e in &expected {
        let hit = got.iter().any(|d| {
            (d.line, d.column, d.severity) == (e.line, e.column, e.severity)
                && d.field == e.field
                && d.message.contains(&e.fragment)
        });
        assert!(hit, "{}: expected {e:?}; got:\n{shown}", path.display());
    }
    assert_eq!(got.len(), expected.len(), "{}: unexpected extra diagnostics:\n{shown}", path.display());
}

#[test]
fn bad_policies_report_every_error_where_it_is() {
    for path in fixtures("bad") {
        match policy::load(&path) {
            Ok((p, _)) => panic!("{}: accepted as {p:?}", path.display()),
            Err(diags) => assert_diagnostics(&path, &diags),
        }
    }
}

#[test]
fn warnings_do_not_invalidate_a_policy() {
    for path in fixtures("warn") {
        match policy::load(&path) {
            Ok((_, warnings)) => assert_diagnostics(&path, &warnings),
            Err(diags) => panic!("{}: rejected: {diags:#?}", path.display()),
        }
    }
}

#[test]
fn shipped_policies_are_valid_without_warnings() {
    for path in shipped() {
        match policy::load(&path) {
            Ok((p, warnings)) => {
                assert!(warnings.is_empty(), "{}: {warnings:#?}", path.display());
                assert_eq!(p.version, 1);
            }
            Err(diags) => panic!("{}: {diags:#?}", path.display()),
        }
    }
}

#[test]
fn shipped_policies_say_what_the_issue_asks() {
    use policy::{Action, Mode};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let (default, _) = policy::load(&dir.join("default.yaml")).unwrap();
    assert_eq!(
        (default.mode, default.default, default.on_undecodable),
        (Mode::Audit, Action::Audit, Action::Audit)
    );
    assert!(default.rules.is_empty());

    let (fleet, _) = policy::load(&dir.join("fleet-baseline.yaml")).unwrap();
    assert_eq!(
        (fleet.mode, fleet.default, fleet.on_undecodable),
        (Mode::Enforce, Action::Audit, Action::Deny)
    );
    let updater = fleet.rules.iter().position(|r| r.name == "nvme-destructive-from-updater").unwrap();
    let deny = fleet.rules.iter().position(|r| r.name == "nvme-destructive").unwrap();
    assert!(updater < deny, "the updater's exception must come before the deny");
    assert_eq!(fleet.rules[deny].action, Action::Deny);
    assert_eq!(fleet.rules[deny].matcher.opcodes.len(), 5);
    // Commands no rule names are judged by what the device declares.
    let by_effect = fleet.rules.iter().find(|r| r.name == "declared-destructive").unwrap();
    assert_eq!(by_effect.action, Action::Deny);
    assert_ne!(by_effect.matcher.effects_any & fwctl_common::effects::effect::DATA_CHANGE_IMMEDIATE, 0);
    let vendor = fleet.rules.iter().find(|r| r.name == "undeclared-vendor-commands").unwrap();
    assert_eq!((vendor.action, vendor.matcher.undeclared), (Action::Deny, Some(true)));

    let (strict, _) = policy::load(&dir.join("strict.yaml")).unwrap();
    assert_eq!((strict.mode, strict.default), (Mode::Enforce, Action::Deny));
    assert!(strict.rules.iter().all(|r| r.action == Action::Allow));
}

fn strs(paths: &[PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}

fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fwctl-guard"))
        .args(["policy", "check"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn check_exits_0_for_valid_files_and_1_otherwise() {
    // The shipped policies are alternatives, so they are named one by one (a directory
    // is one policy: see policy_dir.rs).
    let shipped = shipped();
    let (code, out) = check(&strs(&shipped));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/policies/default.yaml: ok"), "{out}");
    assert!(out.contains("/policies/strict.yaml: ok"), "{out}");

    let warn = fixtures("warn");
    let (code, out) = check(&strs(&warn));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tests/fixtures/policy/warn/shadowed.yaml:10:5: warning: rules[1]: "), "{out}");

    let (code, out) = check(&["../policies/strict.yaml", "tests/fixtures/policy/bad/names.yaml"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "tests/fixtures/policy/bad/names.yaml:16:16: error: rules[1].match.opcode: unknown opcode 'formatnvm' \
             for class nvme-admin (catalog nvme-admin); did you mean 'format-nvm'?"
        ),
        "{out}"
    );

    let (code, out) = check(&["tests/fixtures/policy/no-such-file.yaml"]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn check_json_is_one_document_per_run() {
    let bad = fixtures("bad");
    let mut args = vec!["--format", "json"];
    args.extend(strs(&bad));
    args.push("../policies/default.yaml");
    let (code, out) = check(&args);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), fixtures("bad").len() + 1);
    let names = files.iter().find(|f| f["path"].as_str().unwrap().ends_with("names.yaml")).unwrap();
    assert_eq!(names["valid"], false);
    let first = &names["errors"][0];
    assert_eq!((first["line"].as_u64(), first["column"].as_u64()), (Some(9), Some(15)));
    assert_eq!(first["field"], "rules[0].match.class");
    assert!(first["message"].as_str().unwrap().contains("did you mean 'nvme-admin'?"));
    assert_eq!(names["warnings"], serde_json::json!([]));
    let default = files.last().unwrap();
    assert_eq!((default["valid"].as_bool(), default["errors"].as_array().unwrap().len()), (Some(true), 0));
}
