//! Prometheus metrics: one registration list ([`collectors`]) of every family the agent
//! exports, from which both the registry and the family list (for the README, dashboard
//! and alert checks) are derived. Each domain owns its metrics struct (`audit`, `enforce`,
//! `kernel`, `devices::effects`); the families read from the kernel at scrape time are in
//! [`kernel_counters`], those computed from the host in [`device_info`] and [`taint`].
//! [`http`] serves them with `/healthz` and `/readyz`.

pub mod computed;
pub mod device_info;
pub mod http;
pub mod kernel_counters;
pub mod taint;

use std::{collections::BTreeSet, path::PathBuf, sync::Arc};

use prometheus::{core::Collector, IntGaugeVec, Opts, Registry};

pub use kernel_counters::KernelSources;

use crate::{
    audit::metrics::AuditMetrics,
    config::{MetricsConfig, PerProcessConfig},
    devices::effects::metrics::EffectsMetrics,
    enforce::metrics::PolicyMetrics,
    kernel::metrics::ProgramMetrics,
};

/// The metrics the agent's parts update as they work, one struct per domain.
#[derive(Clone)]
pub struct Metrics {
    pub audit: AuditMetrics,
    pub policy: PolicyMetrics,
    pub programs: ProgramMetrics,
    pub effects: EffectsMetrics,
}

impl Metrics {
    pub fn new(options: &MetricsConfig) -> prometheus::Result<Self> {
        Ok(Self {
            audit: AuditMetrics::new(options)?,
            policy: PolicyMetrics::new()?,
            programs: ProgramMetrics::new()?,
            effects: EffectsMetrics::new(options.device_effects)?,
        })
    }
}

/// Where the scrape-time families read from; `None` everywhere lists the families only.
#[derive(Default)]
pub struct Sources {
    pub kernel: Option<KernelSources>,
    /// The sysfs root the device list is read from.
    pub sys_root: Option<PathBuf>,
    /// Read the kernel's taint flags.
    pub taint: bool,
}

/// Every family the agent exports: the one list.
pub fn collectors(metrics: &Metrics, sources: Sources) -> prometheus::Result<Vec<Box<dyn Collector>>> {
    let mut all: Vec<Box<dyn Collector>> = vec![Box::new(build_info()?)];
    all.extend(metrics.programs.collectors());
    all.extend(metrics.audit.collectors());
    all.extend(metrics.policy.collectors());
    all.extend(metrics.effects.collectors());
    all.extend(kernel_counters::families(sources.kernel)?);
    all.push(Box::new(device_info::family(sources.sys_root)?));
    all.push(Box::new(taint::family(sources.taint)?));
    Ok(all)
}

/// The registry the agent serves.
pub fn registry(metrics: &Metrics, sources: Sources) -> prometheus::Result<Registry> {
    let registry = Registry::new();
    for collector in collectors(metrics, sources)? {
        registry.register(collector)?;
    }
    Ok(registry)
}

/// The name of every family the agent can export, opt-in ones included, whether or not
/// it has samples now: the names in [`collectors`], with every opt-in enabled.
pub fn family_names() -> prometheus::Result<BTreeSet<String>> {
    let all = MetricsConfig {
        device_effects: true,
        per_process: PerProcessConfig { enabled: true, max_series: 1 },
        ..MetricsConfig::default()
    };
    let collectors = collectors(&Metrics::new(&all)?, Sources::default())?;
    Ok(collectors.iter().flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone())).collect())
}

fn build_info() -> prometheus::Result<IntGaugeVec> {
    let build_info = IntGaugeVec::new(
        Opts::new("fwctl_guard_build_info", "fwctl-guard build; the value is always 1."),
        &["version"],
    )?;
    build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    Ok(build_info)
}

/// Render the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode_utf8(&registry.gather(), &mut out) {
        log::error!("encoding metrics: {e}");
    }
    out
}

/// Shared handle for the HTTP server.
pub type SharedRegistry = Arc<Registry>;

#[cfg(test)]
mod tests {
    use super::*;

    /// `fwctl_guard_*` names in a PromQL expression (histogram series suffixes stripped).
    fn promql_metric_names(expr: &str, families: &std::collections::BTreeSet<String>) -> Vec<String> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|token| token.starts_with("fwctl_guard_"))
            .map(|token| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| token.strip_suffix(suffix).filter(|base| families.contains(*base)))
                    .unwrap_or(token)
                    .to_string()
            })
            .collect()
    }

    /// Every string under an `expr` or `query` key (panel targets, template variables, rules).
    fn queries(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(q)) => {
                            out.push(q.clone())
                        }
                        _ => queries(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
            _ => {}
        }
    }

    fn deploy_file(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn dashboard_and_alerts_use_only_exported_families() {
        let families = family_names().unwrap();
        let dashboard: serde_json::Value =
            serde_json::from_str(&deploy_file("deploy/grafana/fwctl-guard.json")).unwrap();
        let alerts: serde_json::Value =
            serde_saphyr::from_str(&deploy_file("deploy/prometheus/alerts.yaml")).unwrap();
        for (file, doc, least) in [("dashboard", &dashboard, 25), ("alerts", &alerts, 9)] {
            let mut exprs = Vec::new();
            queries(doc, &mut exprs);
            let exprs: Vec<_> = exprs.into_iter().filter(|q| q != "prometheus").collect();
            assert!(exprs.len() >= least, "{file}: only {} queries found: {exprs:?}", exprs.len());
            for expr in exprs {
                let names = promql_metric_names(&expr, &families);
                assert!(!names.is_empty(), "{file}: `{expr}` uses no fwctl-guard metric");
                for name in names {
                    assert!(
                        families.contains(&name),
                        "{file}: `{expr}` uses {name}, which the agent does not export"
                    );
                }
            }
        }
    }

    #[test]
    fn the_readme_documents_every_family_and_no_other() {
        let readme = deploy_file("README.md");
        let documented: std::collections::BTreeSet<String> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `fwctl_guard_"))
            .filter_map(|rest| rest.split('`').next())
            .map(|name| format!("fwctl_guard_{name}"))
            .collect();
        assert_eq!(documented, family_names().unwrap());
    }

    #[test]
    fn family_names_include_families_without_samples() {
        let names = family_names().unwrap();
        for name in [
            "fwctl_guard_commands_total",
            "fwctl_guard_decode_errors_total",
            "fwctl_guard_toctou_detected_total",
            "fwctl_guard_fwctl_rpc_checks_total",
            "fwctl_guard_kernel_tainted",
            "fwctl_guard_device_info",
            "fwctl_guard_device_opcode_effects",
            "fwctl_guard_process_commands_total",
            "fwctl_guard_label_overflow_total",
            "fwctl_guard_audit_reopens_total",
        ] {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
        assert!(promql_metric_names("rate(fwctl_guard_x_bucket[5m])", &names) == ["fwctl_guard_x_bucket"]);
    }
}
