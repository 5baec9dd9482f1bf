//! `deploy/` as far as it can be exercised without Docker or Kubernetes: every YAML file
//! parses (each document of a multi-document file), the Kubernetes files hold the objects
//! README names, the callgate configs they carry pass `callgate check` against the shipped
//! mappings, and the Dockerfile builds with the README's build command. (`.ci/run` also
//! runs `systemd-analyze verify` on the unit.)

use crate::support::root;
use serde_json::Value;
use std::process::Command;

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

fn check(config: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["check", "--mappings", "mappings", "--config"])
        .arg(config)
        .env("RC_VERIFICATION_TOKEN", "deploy-check-token")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} fails check:\n{}{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deploy_files_parse_and_their_configs_pass_check() {
    for path in [
        "deploy/compose.yaml",
        "deploy/callgate.container.yaml",
        "deploy/callgate.nats.yaml",
        "deploy/k8s/callgate.yaml",
    ] {
        assert!(!documents(path).is_empty(), "{path} is empty");
    }
    let kinds: Vec<String> = documents("deploy/k8s/callgate-nats.yaml")
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler"
        ]
    );
    let compose = &documents("deploy/compose.yaml")[0];
    for service in ["nats", "callgate-1", "callgate-2", "gateway"] {
        assert!(
            compose["services"][service].is_object(),
            "compose lacks {service}"
        );
    }

    check(&root().join("deploy/callgate.nats.yaml"));
    // The config inside the ConfigMap, as the pods read it.
    let dir = tempfile::tempdir().unwrap();
    let embedded = dir.path().join("callgate.yaml");
    let map = &documents("deploy/k8s/callgate-nats.yaml")[0];
    std::fs::write(&embedded, map["data"]["callgate.yaml"].as_str().unwrap()).unwrap();
    check(&embedded);
}

#[test]
fn the_dockerfile_runs_the_release_build_and_the_readme_names_the_demo() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked --bin callgate"));
    assert!(dockerfile.contains("USER callgate") && dockerfile.contains("HEALTHCHECK"));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- demo"));
}
