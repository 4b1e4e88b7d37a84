//! Policy directories (`policy.d`): files merged in lexical order into one policy; header
//! keys set once; rule names unique across files; every diagnostic at its own file.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use fwctl_user::policy::{self, Action, Mode};

const BASE: &str = "version: 1\nname: site\nmode: enforce\ndefault: audit\n";

fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fwctl-guard-policy-dir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn rule(name: &str, action: &str, opcode: &str) -> String {
    format!("  - name: {name}\n    action: {action}\n    match: {{class: nvme-admin, opcode: {opcode}}}\n")
}

fn errors(dir: &Path) -> Vec<String> {
    policy::load(dir).unwrap_err().iter().map(|d| d.render("?")).collect()
}

#[test]
fn files_merge_in_lexical_order_and_the_first_match_decides() {
    let d = dir(
        "merge",
        &[
            (
                "50-team.yaml",
                &format!("version: 1\nrules:\n{}", rule("team-allow-format", "allow", "format-nvm")),
            ),
            (
                "10-site.yaml",
                &format!("version: 1\nrules:\n{}", rule("site-deny-format", "deny", "format-nvm")),
            ),
            ("00-base.yaml", &format!("{BASE}on_toctou: kill\n")),
            // Not members: dpkg's leftovers, hidden files, other suffixes, directories.
            ("10-site.yaml.dpkg-old", "garbage: ["),
            (".30-hidden.yaml", "garbage: ["),
            ("README", "not yaml"),
        ],
    );
    std::fs::create_dir(d.join("40-dir.yaml")).unwrap();
    let members: Vec<String> = policy::dir::members(&d)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(members, ["00-base.yaml", "10-site.yaml", "50-team.yaml"]);

    let (p, warnings) = policy::load(&d).unwrap();
    assert_eq!(
        (p.name.as_str(), p.mode, p.default, p.on_undecodable),
        ("site", Mode::Enforce, Action::Audit, Action::Audit)
    );
    assert_eq!(p.on_toctou, policy::OnToctou::Kill);
    let names: Vec<&str> = p.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["site-deny-format", "team-allow-format"]);
    assert!(p.rules[0].file.as_deref().unwrap().ends_with("/10-site.yaml"));
    // The later rule is shadowed, and the warning says where both are.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].render("?");
    assert!(w.contains("/50-team.yaml:3:5: warning: rules[0]:"), "{w}");
    assert!(w.contains("rule 'site-deny-format' (") && w.contains("10-site.yaml:3)"), "{w}");
}

#[test]
fn a_header_key_set_in_two_files_is_an_error_naming_both() {
    let d =
        dir("header", &[("00-base.yaml", BASE), ("60-local.yaml", "version: 1\nmode: audit\nrules: []\n")]);
    let e = errors(&d);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("/60-local.yaml:2:7: error: mode: 'mode' is already set in "), "{e:?}");
    assert!(e[0].contains("/00-base.yaml:3:7;"), "{e:?}");
}

#[test]
fn rule_names_are_unique_across_files() {
    let d = dir(
        "dup",
        &[
            ("00-base.yaml", &format!("{BASE}rules:\n{}", rule("format", "deny", "format-nvm"))),
            (
                "10-more.yaml",
                &format!(
                    "version: 1\nrules:\n{}{}",
                    rule("ok", "allow", "identify"),
                    rule("format", "allow", "0x80")
                ),
            ),
        ],
    );
    let e = errors(&d);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("/10-more.yaml:6:5: error: rules[1].name: duplicate rule name 'format'"), "{e:?}");
    assert!(e[0].contains("00-base.yaml:6)"), "{e:?}");
}

#[test]
fn every_file_is_checked_and_errors_keep_their_file() {
    let d = dir(
        "errors",
        &[
            ("00-base.yaml", "version: 1\nname: x\nmode: enforce\n"),
            ("10-syntax.yaml", "version: 1\nrules: [\n"),
            ("20-names.yaml", &format!("version: 1\nrules:\n{}", rule("r", "deny", "formatnvm"))),
            ("30-noversion.yaml", "rules: []\n"),
        ],
    );
    let e = errors(&d);
    let text = e.join("\n");
    assert!(text.contains("/10-syntax.yaml:2:8: error: invalid YAML"), "{text}");
    assert!(
        text.contains("/20-names.yaml:5:40: error: rules[0].match.opcode: unknown opcode 'formatnvm'"),
        "{text}"
    );
    assert!(text.contains("/30-noversion.yaml:1:1: error: missing required key 'version'"), "{text}");
    assert!(text.contains(": error: default: no file of the directory sets 'default'"), "{text}");
}

#[test]
fn an_empty_directory_is_no_policy() {
    let d = dir("empty", &[("notes.txt", "")]);
    let e = errors(&d);
    assert!(e[0].contains("holds no *.yaml policy file"), "{e:?}");
}

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fwctl-guard")).args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_explain_and_diff_take_a_directory() {
    let good = dir(
        "cli-good",
        &[
            ("00-base.yaml", BASE),
            ("10-rules.yaml", &format!("version: 1\nrules:\n{}", rule("no-format", "deny", "format-nvm"))),
        ],
    );
    let g = good.to_str().unwrap();
    let (code, out) = cli(&["policy", "check", g]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{g}: ok: policy 'site', mode enforce, 1 rule")), "{out}");

    let (code, out) = cli(&["policy", "explain", g, "--class", "nvme-admin", "--opcode", "format-nvm"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict: deny (rule 'no-format'"), "{out}");

    let single = good.join("00-base.yaml");
    let (code, out) = cli(&["policy", "diff", single.to_str().unwrap(), g]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("format-nvm") && out.contains("audit [default] -> deny [no-format]"), "{out}");

    let bad = dir("cli-bad", &[("00-base.yaml", BASE), ("10-x.yaml", "version: 1\nname: other\n")]);
    let b = bad.to_str().unwrap();
    let (code, out) = cli(&["policy", "check", b]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{b}/10-x.yaml:2:7: error: name: 'name' is already set in {b}/00-base.yaml:2:7"
        )),
        "{out}"
    );
    let (code, out) = cli(&["policy", "check", "--format", "json", b]);
    assert_eq!(code, 1, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let error = &json["files"][0]["errors"][0];
    assert_eq!(error["file"], format!("{b}/10-x.yaml"));
    assert_eq!((error["line"].as_u64(), error["column"].as_u64()), (Some(2), Some(7)));
}
