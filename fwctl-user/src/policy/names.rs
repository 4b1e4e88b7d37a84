//! The policy vocabulary: class, driver and scope names, which drivers a class can have,
//! which opcode catalog applies to a class (and fwctl driver), and "did you mean" hints.

use fwctl_common::{
    catalog::{for_class as catalog_for, names_match, Catalog},
    model::{class, driver, scope},
};

/// Every driver a policy can name (`unknown` is not a name).
pub const DRIVERS: [u8; 10] = [
    driver::MLX5,
    driver::CXL,
    driver::PDS,
    driver::BNXT,
    driver::NVME,
    driver::SG,
    driver::SD,
    driver::BSG,
    driver::SR,
    driver::ST,
];

/// The fwctl drivers, each with its own opcode space.
pub const FWCTL_DRIVERS: [u8; 4] = [driver::MLX5, driver::CXL, driver::PDS, driver::BNXT];

/// Every fwctl scope.
pub const SCOPES: [u8; 4] =
    [scope::CONFIGURATION, scope::DEBUG_READ_ONLY, scope::DEBUG_WRITE, scope::DEBUG_WRITE_FULL];

fn find(ids: &[u8], label: fn(u8) -> &'static str, name: &str) -> Option<u8> {
    ids.iter().copied().find(|id| names_match(label(*id), name))
}

/// Class id of a name (case-insensitive, `_` = `-`).
pub fn class_from_name(name: &str) -> Option<u8> {
    find(&class::ALL, class::label, name)
}

pub fn driver_from_name(name: &str) -> Option<u8> {
    find(&DRIVERS, driver::label, name)
}

pub fn scope_from_name(name: &str) -> Option<u8> {
    find(&SCOPES, scope::label, name)
}

/// The drivers commands of `class` can carry.
pub fn drivers_of(class_id: u8) -> &'static [u8] {
    match class_id {
        class::FWCTL => &FWCTL_DRIVERS,
        class::NVME_ADMIN | class::NVME_IO => &[driver::NVME],
        class::CXL_MEM => &[driver::CXL],
        class::SCSI => &[driver::SG, driver::SD, driver::BSG, driver::SR, driver::ST],
        _ => &[],
    }
}

/// Whether a command of `class` can come with `driver`.
pub fn compatible(class_id: u8, drv: u8) -> bool {
    drivers_of(class_id).contains(&drv)
}

/// One opcode space: a class, and for fwctl the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub class: u8,
    pub driver: Option<u8>,
}

impl Space {
    pub fn catalog(self) -> &'static Catalog {
        catalog_for(self.class, self.driver.unwrap_or(driver::UNKNOWN)).expect("every space has a catalog")
    }

    /// Name of the catalog, as messages show it.
    pub fn catalog_name(self) -> &'static str {
        match (self.class, self.driver) {
            (class::FWCTL, Some(driver::MLX5)) => "mlx5",
            (class::FWCTL, Some(driver::CXL)) | (class::CXL_MEM, _) => "cxl-mbox",
            (class::FWCTL, Some(driver::PDS)) => "pds",
            (class::FWCTL, Some(driver::BNXT)) => "bnxt-hwrm",
            (class::NVME_ADMIN, _) => "nvme-admin",
            (class::NVME_IO, _) => "nvme-io",
            (class::SCSI, _) => "scsi-cdb",
            _ => "none",
        }
    }

    /// `nvme-admin`, `fwctl/mlx5`.
    pub fn label(self) -> String {
        match self.driver {
            Some(d) => format!("{}/{}", class::label(self.class), driver::label(d)),
            None => class::label(self.class).to_string(),
        }
    }

    /// Largest opcode of this space (NVMe and SCSI opcodes are one byte; CXL and every fwctl
    /// decoder keep 16 bits).
    pub fn max_opcode(self) -> u32 {
        match self.class {
            class::NVME_ADMIN | class::NVME_IO | class::SCSI => 0xff,
            _ => 0xffff,
        }
    }
}

/// The opcode spaces a rule can match: the classes it names (or, naming none, those its
/// drivers belong to, or every class), and for fwctl each fwctl driver it names (or all
/// four). A class none of the named drivers belongs to is left out unless that would
/// leave nothing (then drivers are ignored, so names still resolve and the rule is
/// reported as unmatchable elsewhere).
pub fn spaces(classes: &[u8], drivers: &[u8]) -> Vec<Space> {
    let with_drivers = spaces_for(classes, drivers);
    if with_drivers.is_empty() {
        spaces_for(classes, &[])
    } else {
        with_drivers
    }
}

fn spaces_for(classes: &[u8], drivers: &[u8]) -> Vec<Space> {
    let classes: Vec<u8> = if !classes.is_empty() {
        classes.to_vec()
    } else if !drivers.is_empty() {
        class::ALL.into_iter().filter(|c| drivers.iter().any(|d| compatible(*c, *d))).collect()
    } else {
        class::ALL.to_vec()
    };
    let mut out = Vec::new();
    for c in classes {
        if c == class::FWCTL {
            for d in FWCTL_DRIVERS {
                if drivers.is_empty() || drivers.contains(&d) {
                    out.push(Space { class: c, driver: Some(d) });
                }
            }
        } else if drivers.is_empty() || drivers.iter().any(|d| compatible(c, *d)) {
            out.push(Space { class: c, driver: None });
        }
    }
    out
}

/// The closest of `candidates` to `input` (edit distance after folding case and `_`),
/// if close enough to be a likely typo.
pub fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = fold(input);
    let limit = (folded.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(&folded, &fold(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn fold(s: &str) -> String {
    s.chars().map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() }).collect()
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_case_and_underscores() {
        assert_eq!(class_from_name("NVME_ADMIN"), Some(class::NVME_ADMIN));
        assert_eq!(driver_from_name("mlx5"), Some(driver::MLX5));
        assert_eq!(driver_from_name("unknown"), None);
        assert_eq!(scope_from_name("debug-write-full"), Some(scope::DEBUG_WRITE_FULL));
        assert_eq!(scope_from_name("none"), None);
    }

    #[test]
    fn spaces_follow_classes_and_drivers() {
        assert_eq!(spaces(&[], &[]).len(), 8);
        assert_eq!(
            spaces(&[], &[driver::MLX5]),
            vec![Space { class: class::FWCTL, driver: Some(driver::MLX5) }]
        );
        // cxl is both a fwctl driver and the CXL memdev driver.
        assert_eq!(
            spaces(&[], &[driver::CXL]),
            vec![
                Space { class: class::FWCTL, driver: Some(driver::CXL) },
                Space { class: class::CXL_MEM, driver: None }
            ]
        );
        assert_eq!(spaces(&[class::FWCTL], &[]).len(), 4);
        // Nothing compatible: drivers are ignored.
        assert_eq!(spaces(&[class::NVME_ADMIN], &[driver::MLX5]).len(), 1);
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let names = ["format-nvm", "sanitize", "identify"];
        assert_eq!(suggest("formatnvm", names), Some("format-nvm"));
        assert_eq!(suggest("SANITISE", names), Some("sanitize"));
        assert_eq!(suggest("reboot", names), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
