//! `deploy/kubernetes/`: a structural check of the manifests (no cluster and no network
//! here, and kubeconform is not packaged for Debian): every file parses, kinds and API
//! versions are known, required fields are there, every mount names a volume and every
//! hostPath is one the agent needs, probes and the Service point at the declared port,
//! the capabilities are the systemd unit's, and the ConfigMap's configuration and policy
//! are what the agent itself accepts (parsed with its own types).

use std::{collections::BTreeSet, path::Path};

use fwctl_user::{config::Config, policy};
use serde_json::Value;

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn manifest(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|s| s.as_str().unwrap()).collect()
}

#[test]
fn every_manifest_is_a_known_kind_with_its_required_fields() {
    let known = [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("apps/v1", "DaemonSet"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    ];
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "configmap.yaml",
            "daemonset.yaml",
            "kustomization.yaml",
            "namespace.yaml",
            "podmonitor.yaml",
            "service.yaml"
        ]
    );
    for name in &names {
        let m = manifest(name);
        let kind = (m["apiVersion"].as_str().unwrap_or(""), m["kind"].as_str().unwrap_or(""));
        assert!(known.contains(&kind), "{name}: unknown {kind:?}");
        if kind.1 == "Kustomization" {
            let resources: BTreeSet<&str> = strs(&m["resources"]).into_iter().collect();
            for r in &resources {
                assert!(dir().join(r).exists(), "kustomization names missing {r}");
            }
            assert!(resources.contains("daemonset.yaml") && resources.contains("configmap.yaml"));
            continue;
        }
        assert!(m["metadata"]["name"].is_string(), "{name}: metadata.name");
        if kind.1 != "Namespace" {
            assert_eq!(m["metadata"]["namespace"], "fwctl-guard", "{name}");
        }
    }
}

#[test]
fn the_daemonset_mounts_what_it_needs_with_the_units_capabilities() {
    let ds = manifest("daemonset.yaml");
    let spec = &ds["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], labels, "the selector selects the template");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["hostPID"], false);
    assert_eq!(pod["hostNetwork"], false);

    let volumes: Vec<&Value> = pod["volumes"].as_array().unwrap().iter().collect();
    let volume_names: BTreeSet<&str> = volumes.iter().map(|v| v["name"].as_str().unwrap()).collect();
    let host_paths: BTreeSet<&str> = volumes.iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
    assert_eq!(
        host_paths,
        BTreeSet::from([
            "/sys/fs/bpf",
            "/sys/kernel/tracing",
            "/sys/kernel/security",
            "/sys/kernel/btf",
            "/dev",
            "/var/log/fwctl-guard"
        ])
    );

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let agent = &containers[0];
    let all = containers.iter().chain(pod["initContainers"].as_array().unwrap());
    for c in all {
        for m in c["volumeMounts"].as_array().unwrap() {
            assert!(volume_names.contains(m["name"].as_str().unwrap()), "mount of a missing volume: {m}");
        }
        assert!(c["image"].is_string(), "{c}");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    }
    let sc = &agent["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/fwctl-guard.service"),
    )
    .unwrap();
    let unit_caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap()
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    assert_eq!(strs(&sc["capabilities"]["add"]), unit_caps, "same set as the systemd unit");
    let bpffs =
        agent["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == "/sys/fs/bpf").unwrap();
    assert!(bpffs["readOnly"] != true, "pins are written");

    // Probes and the Service name the container's port; the ConfigMap listens there.
    let port = &agent["ports"][0];
    assert_eq!(port["name"], "metrics");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(agent[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], "/readyz");
    let svc = manifest("service.yaml");
    assert_eq!(svc["spec"]["clusterIP"], "None", "headless");
    assert_eq!(&svc["spec"]["selector"], labels);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    let pm = manifest("podmonitor.yaml");
    assert_eq!(&pm["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "metrics");

    // The command line points at the mounted config, whose keys exist in the ConfigMap.
    let command = strs(&agent["command"]);
    assert_eq!(command[..3], ["/usr/bin/fwctl-guard", "run", "--config"]);
    let cm = manifest("configmap.yaml");
    let config_volume = volumes.iter().find(|v| v["configMap"].is_object()).unwrap();
    assert_eq!(config_volume["configMap"]["name"], cm["metadata"]["name"]);
    let mount = agent["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == config_volume["name"])
        .unwrap();
    for item in config_volume["configMap"]["items"].as_array().unwrap() {
        let key = item["key"].as_str().unwrap();
        assert!(cm["data"][key].is_string(), "ConfigMap has no key {key}");
        let mounted = format!("{}/{}", mount["mountPath"].as_str().unwrap(), item["path"].as_str().unwrap());
        if key == "config.yaml" {
            assert_eq!(command[3], mounted);
        }
    }
}

#[test]
fn the_configmaps_config_and_policy_are_what_the_agent_accepts() {
    let cm = manifest("configmap.yaml");
    let config = Config::parse(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(config.policy.as_deref(), Some(Path::new("/etc/fwctl-guard/policy.d")));
    assert_eq!(config.metrics.listen.to_string(), "0.0.0.0:9847", "scrapeable at the pod IP");
    // The policy keys, mounted under policy.d/, merged as the agent merges them.
    let dir = std::env::temp_dir().join(format!("fwctl-guard-k8s-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = cm["data"].as_object().unwrap();
    for (key, text) in data.iter().filter(|(k, _)| k.as_str() != "config.yaml") {
        std::fs::write(dir.join(key), text.as_str().unwrap()).unwrap();
    }
    let (policy, warnings) = policy::load(&dir).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!((policy.name.as_str(), warnings.len()), ("default", 0));
}
