//! `fwctl-guard devices --effects`: each node's tables as rows (opcode, name, supported,
//! effects, and the feature of CXL Set Feature rows), as text or JSON.

use std::{collections::BTreeSet, fmt::Write as _};

use fwctl_common::{
    effects::{effect, CXL_GET_FEATURE, CXL_SET_FEATURE},
    model::{class, decode_status, driver},
};
use serde::Serialize;

use super::{
    read::{NodeEffects, Outcome},
    table::{Table, CXL_GET_SUPPORTED_FEATURES},
};
use crate::names;

/// One opcode of a table (one feature, for CXL Set Feature).
#[derive(Debug, Serialize, PartialEq)]
pub struct Row {
    /// `0x%04x`.
    pub opcode: String,
    pub name: &'static str,
    pub supported: bool,
    /// `effect::NAMES` of the declared effects (empty when none or unsupported).
    pub effects: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
}

/// The opcodes a table is shown with: those the class's catalog names and those the
/// device lists (so vendor opcodes appear), or, for a CXL fwctl node, the three feature
/// commands its driver passes.
fn shown_opcodes(table: &Table) -> BTreeSet<u32> {
    let mut opcodes: BTreeSet<u32> = table.entries.iter().map(|d| d.opcode).collect();
    if table.class == class::FWCTL && table.driver == driver::CXL {
        opcodes.extend([CXL_GET_SUPPORTED_FEATURES, CXL_GET_FEATURE, CXL_SET_FEATURE]);
    } else if let Some(catalog) = fwctl_common::catalog::for_class(table.class, table.driver) {
        opcodes.extend(catalog.entries.iter().map(|(opcode, _)| *opcode));
    }
    opcodes
}

/// The rows of `table`, by opcode (Set Feature: one row per feature).
pub fn rows(table: &Table) -> Vec<Row> {
    let mut rows = Vec::new();
    for opcode in shown_opcodes(table) {
        let name = names::opcode_name(table.class, table.driver, 0, opcode, decode_status::OK);
        let declared: Vec<_> = table.entries.iter().filter(|d| d.opcode == opcode).collect();
        if declared.is_empty() {
            rows.push(Row {
                opcode: names::opcode(opcode),
                name,
                supported: false,
                effects: vec![],
                feature: None,
            });
        }
        for d in declared {
            rows.push(Row {
                opcode: names::opcode(opcode),
                name,
                supported: true,
                effects: effect::names(d.effects).collect(),
                feature: (d.feature != [0; 16]).then(|| names::uuid(&d.feature)),
            });
        }
    }
    rows
}

#[derive(Debug, Serialize)]
pub struct TableReport {
    pub class: &'static str,
    pub opcodes: Vec<Row>,
}

/// A node's effects in `devices --json`.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum EffectsReport {
    Read { tables: Vec<TableReport> },
    Inherited { from: String, tables: Vec<TableReport> },
    Failed { class: &'static str, reason: String, error: String },
    Unknown { why: String },
    NotApplicable,
}

fn table_reports(tables: &[Table]) -> Vec<TableReport> {
    tables.iter().map(|t| TableReport { class: class::label(t.class), opcodes: rows(t) }).collect()
}

impl EffectsReport {
    pub fn of(node: &NodeEffects) -> Self {
        match &node.outcome {
            Outcome::Read(tables) => Self::Read { tables: table_reports(tables) },
            Outcome::Inherited { from, tables } => {
                Self::Inherited { from: from.clone(), tables: table_reports(tables) }
            }
            Outcome::Failed { class: c, error } => Self::Failed {
                class: class::label(*c),
                reason: error.reason.clone(),
                error: error.to_string(),
            },
            Outcome::Unknown(why) => Self::Unknown { why: why.clone() },
            Outcome::NotApplicable => Self::NotApplicable,
        }
    }
}

/// A node's effects as indented text under its device line.
pub fn text(node: &NodeEffects) -> String {
    let mut out = String::new();
    match &node.outcome {
        Outcome::Read(tables) => {
            for table in tables {
                render_table(&mut out, table);
            }
        }
        Outcome::Inherited { from, .. } => {
            let _ = writeln!(out, "    effects: as declared by controller {from} (see its table)");
        }
        Outcome::Failed { error, .. } => {
            let _ = writeln!(out, "    effects: not read ({}): {error}", error.reason);
        }
        Outcome::Unknown(why) => {
            let _ = writeln!(out, "    effects: unknown: {why}");
        }
        Outcome::NotApplicable => {
            let _ = writeln!(out, "    effects: none declared (this kind of device has no effects log)");
        }
    }
    out
}

fn render_table(out: &mut String, table: &Table) {
    let rows = rows(table);
    let supported = rows.iter().filter(|r| r.supported).count();
    let _ = writeln!(out, "    {}: {} opcodes supported", class::label(table.class), supported);
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "      {:<8} {:<width$} {:<9} effects", "opcode", "name", "supported");
    for row in rows {
        let effects = if row.effects.is_empty() { "-".to_string() } else { row.effects.join(",") };
        let feature = row.feature.map(|f| format!("  feature {f}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "      {:<8} {:<width$} {:<9} {effects}{feature}",
            row.opcode,
            row.name,
            if row.supported { "yes" } else { "no" }
        );
    }
}

#[cfg(test)]
mod tests {
    use fwctl_common::effects::Feature;

    use super::*;

    fn nvme_admin() -> Table {
        let mut log = vec![0u8; 4096];
        log[0x06 * 4] = 1; // identify
        log[0x80 * 4] = 1 | 2; // format-nvm: LBCC
        log[0xc5 * 4] = 1; // a vendor opcode the controller lists
        let [admin, _] = Table::from_nvme_log(&log);
        admin
    }

    #[test]
    fn rows_cover_the_catalog_and_the_vendor_opcodes_the_device_lists() {
        let rows = rows(&nvme_admin());
        let find = |op: &str| rows.iter().find(|r| r.opcode == op).unwrap();
        let identify = find("0x0006");
        assert_eq!((identify.name, identify.supported, identify.effects.len()), ("identify", true, 0));
        let format = find("0x0080");
        assert_eq!(format.name, "format-nvm");
        assert_eq!(format.effects, ["data-change-immediate", "logical-block-content-change"]);
        let sanitize = find("0x0084");
        assert!(!sanitize.supported, "in the catalog, not listed by the device");
        let vendor = find("0x00c5");
        assert_eq!((vendor.name, vendor.supported), ("unknown", true));
        assert!(rows.iter().all(|r| r.opcode != "0x00c0"), "unlisted vendor opcodes are not shown");
        assert!(rows.windows(2).all(|w| w[0].opcode <= w[1].opcode));
    }

    #[test]
    fn fwctl_cxl_rows_show_one_set_feature_row_per_feature() {
        let feature = Feature {
            uuid: [0xff; 16],
            id: 0,
            get_size: 4,
            set_size: 4,
            flags: 0,
            raw_effects: 0x201,
            effects: effect::CONFIG_CHANGE_COLD_RESET,
        };
        let rows = rows(&Table::fwctl_cxl(&[feature], None));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].name, "get-supported-features");
        assert_eq!(rows[2].name, "set-feature");
        assert_eq!(rows[2].feature.as_deref(), Some("ffffffff-ffff-ffff-ffff-ffffffffffff"));
        assert_eq!(rows[2].effects, ["config-change-cold-reset"]);
        // Without features, Set Feature is shown as unsupported.
        let rows = super::rows(&Table::fwctl_cxl(&[], None));
        assert_eq!(
            (rows[2].opcode.as_str(), rows[2].supported, rows[2].feature.as_deref()),
            ("0x0502", false, None)
        );
    }

    #[test]
    fn json_and_text_say_what_was_read() {
        let table = nvme_admin();
        let json =
            serde_json::to_value(EffectsReport::Read { tables: table_reports(std::slice::from_ref(&table)) })
                .unwrap();
        assert_eq!(json["status"], "read");
        assert_eq!(json["tables"][0]["class"], "nvme-admin");
        let identify = json["tables"][0]["opcodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["opcode"] == "0x0006")
            .unwrap();
        assert_eq!(identify["supported"], true);
        assert!(identify.get("feature").is_none());
        let failed = serde_json::to_value(EffectsReport::NotApplicable).unwrap();
        assert_eq!(failed["status"], "not-applicable");
        let mut text = String::new();
        render_table(&mut text, &table);
        assert!(text.contains("nvme-admin: 3 opcodes supported"), "{text}");
        let format_line = text.lines().find(|l| l.contains("format-nvm")).unwrap();
        assert!(
            format_line.contains(" yes ") && format_line.contains("logical-block-content-change"),
            "{format_line}"
        );
        let sanitize_line = text.lines().find(|l| l.contains("sanitize")).unwrap();
        assert!(sanitize_line.contains(" no ") && sanitize_line.ends_with('-'), "{sanitize_line}");
    }
}
