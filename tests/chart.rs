//! The Helm chart ships the same CRDs as `crds/` (byte for byte), and its Deployment passes only
//! flags the controller command defines in the common contract.

use std::fs;
use std::path::Path;

#[test]
fn chart_crds_are_identical_to_the_generated_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut repository: Vec<_> = fs::read_dir(root.join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut chart: Vec<_> = fs::read_dir(root.join("charts/autoguardrails/crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    repository.sort();
    chart.sort();
    assert_eq!(
        repository, chart,
        "charts/autoguardrails/crds must hold exactly the files of crds/ (cp crds/*.yaml charts/autoguardrails/crds/)"
    );
    assert!(!repository.is_empty());
    for name in &repository {
        let generated = fs::read(root.join("crds").join(name)).unwrap();
        let shipped = fs::read(root.join("charts/autoguardrails/crds").join(name)).unwrap();
        assert!(
            generated == shipped,
            "charts/autoguardrails/crds/{} differs from crds/{0}: run `make crds && cp crds/*.yaml charts/autoguardrails/crds/`",
            name.to_string_lossy()
        );
    }
}

#[test]
fn deployment_uses_only_the_contract_flags() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let template =
        fs::read_to_string(root.join("charts/autoguardrails/templates/deployment.yaml")).unwrap();
    let contract = [
        "--config",
        "--namespaces",
        "--cluster-id",
        "--protected-principal",
        "--kill-switch",
        "--drift-period",
        "--aws-backend",
        "--metrics-addr",
        "--signals-addr",
        "--leader-election",
        "--lease-name",
        "--lease-namespace",
        "--log-format",
    ];
    let used: Vec<&str> = template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- --"))
        .map(|flag| flag.split(['=', ' ']).next().unwrap_or(flag))
        .collect();
    assert!(
        used.len() >= 10,
        "flags not found in the template: {used:?}"
    );
    for flag in used {
        assert!(
            contract.contains(&format!("--{flag}").as_str()),
            "the chart passes --{flag}, which is not in the controller flag contract"
        );
    }
}
