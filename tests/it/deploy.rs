//! `deploy/` as far as it can be exercised without Docker or Kubernetes: every YAML file
//! parses (each document of a multi-document file); the Kubernetes manifests pass the
//! Kubernetes schemas (`kubernetes-validate`, PyPI) and ship every ConfigMap they mount; every
//! callgate config they carry passes `callgate check`; the image's config listens on all
//! interfaces; compose defines every service it names; the Docker build context leaves
//! `target/` out. (`.ci/run` also runs `systemd-analyze verify` on the unit.)

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

/// The Kubernetes manifests.
const MANIFESTS: [&str; 2] = ["deploy/k8s/callgate.yaml", "deploy/k8s/callgate-nats.yaml"];

#[test]
fn deploy_files_parse_and_their_configs_pass_check() {
    for path in [
        "deploy/compose.yaml",
        "deploy/callgate.container.yaml",
        "deploy/callgate.nats.yaml",
    ]
    .into_iter()
    .chain(MANIFESTS)
    {
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
    check(&root().join("deploy/callgate.container.yaml"));
    // The config inside each ConfigMap, as the pods read it.
    let dir = tempfile::tempdir().unwrap();
    for manifest in MANIFESTS {
        let map = documents(manifest)
            .into_iter()
            .find(|d| d["kind"] == "ConfigMap")
            .unwrap_or_else(|| panic!("{manifest} ships no ConfigMap"));
        let embedded = dir.path().join(format!(
            "{}.yaml",
            map["metadata"]["name"].as_str().unwrap()
        ));
        std::fs::write(&embedded, map["data"]["callgate.yaml"].as_str().unwrap()).unwrap();
        check(&embedded);
    }
}

/// Runs `kubernetes-validate --strict` (the Kubernetes OpenAPI schemas, offline) on `files`.
fn kubernetes_validate(files: &[std::path::PathBuf]) -> std::process::Output {
    Command::new("kubernetes-validate")
        .arg("--strict")
        .args(files)
        .output()
        .expect(
            "kubernetes-validate runs (python3 -m pip install kubernetes-validate==1.37.0; scripts/test installs it)",
        )
}

/// Every manifest passes the Kubernetes schemas, strictly (no unknown field); and the
/// validator is not a formality: a misspelt field in a copy is refused.
#[test]
fn kubernetes_manifests_pass_the_kubernetes_schemas() {
    let files: Vec<_> = MANIFESTS.iter().map(|m| root().join(m)).collect();
    let out = kubernetes_validate(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    std::fs::write(&broken, text.replace("readinessProbe", "readynessProbe")).unwrap();
    assert!(!kubernetes_validate(&[broken]).status.success());
}

/// What a pod mounts is shipped beside it (a ConfigMap named but not shipped kept the
/// StatefulSet from ever starting), and every pod runs as the image's user with limits; a pod
/// with a volume claim gets `fsGroup`, so a fresh volume is writable by UID 999.
#[test]
fn kubernetes_pods_mount_what_is_shipped_and_run_confined() {
    for manifest in MANIFESTS {
        let docs = documents(manifest);
        let config_maps: Vec<&str> = docs
            .iter()
            .filter(|d| d["kind"] == "ConfigMap")
            .filter_map(|d| d["metadata"]["name"].as_str())
            .collect();
        for workload in docs
            .iter()
            .filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment")
        {
            let pod = &workload["spec"]["template"]["spec"];
            for volume in pod["volumes"].as_array().into_iter().flatten() {
                if let Some(name) = volume["configMap"]["name"].as_str() {
                    assert!(
                        config_maps.contains(&name),
                        "{manifest}: ConfigMap `{name}` is mounted but not shipped"
                    );
                }
            }
            assert_eq!(pod["securityContext"]["runAsUser"], 999, "{manifest}");
            if workload["spec"]["volumeClaimTemplates"].is_array() {
                assert_eq!(pod["securityContext"]["fsGroup"], 999, "{manifest}");
            }
            for container in pod["containers"].as_array().unwrap() {
                assert!(
                    container["resources"]["limits"]["memory"].is_string(),
                    "{manifest}: no memory limit"
                );
                assert_eq!(
                    container["securityContext"]["allowPrivilegeEscalation"], false,
                    "{manifest}"
                );
            }
        }
    }
}

/// The config the image starts with listens on every interface (`docker run -p 8080:8080`
/// reaches it; a loopback listener in a container reaches nothing), and it is the file the
/// Dockerfile copies to the path its CMD names.
#[test]
fn the_image_config_listens_on_all_interfaces() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find(|l| l.starts_with("CMD"))
        .expect("a CMD");
    let config = cmd
        .split('"')
        .find(|part| part.ends_with(".yaml"))
        .expect("CMD names a config");
    let workdir = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("WORKDIR "))
        .next_back()
        .unwrap();
    let copied = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY deploy/"))
        .find_map(|l| {
            let (from, to) = l.split_once(' ')?;
            let to = to.trim().trim_start_matches("./");
            (format!("{workdir}/{to}") == config).then(|| from.to_string())
        })
        .unwrap_or_else(|| panic!("the Dockerfile copies no deploy/ file to {config}"));
    let text = std::fs::read_to_string(root().join("deploy").join(&copied)).unwrap();
    let parsed =
        callgate::config::load::parse(std::path::Path::new(&copied), &text, &|_| Some("x".into()))
            .unwrap();
    assert!(
        parsed.server.listen.ip().is_unspecified(),
        "{copied} listens on {}",
        parsed.server.listen
    );
    assert!(parsed.server.admin_listen.ip().is_loopback());
}

/// compose defines every service its callgate config delivers to and every one it depends
/// on, and a healthcheck's command exists in its image (`wget` is in the alpine images only).
#[test]
fn compose_defines_what_it_names() {
    let compose = &documents("deploy/compose.yaml")[0];
    let services = compose["services"].as_object().unwrap();
    let config = std::fs::read_to_string(root().join("deploy/callgate.nats.yaml")).unwrap();
    let parsed = callgate::config::load::parse(std::path::Path::new("c.yaml"), &config, &|_| {
        Some("x".into())
    })
    .unwrap();
    for route in &parsed.routes {
        for dest in &route.to {
            let url = reqwest::Url::parse(dest.url.as_ref().unwrap().value()).unwrap();
            let host = url.host_str().unwrap();
            assert!(
                services.contains_key(host),
                "compose has no service `{host}`"
            );
        }
    }
    for (name, service) in services {
        for dependency in service["depends_on"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .or_else(|| {
                service["depends_on"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default()
        {
            assert!(
                services.contains_key(&dependency),
                "{name} depends on `{dependency}`"
            );
        }
        if service["healthcheck"]["test"][1] == "wget" {
            let image = service["image"].as_str().unwrap_or_default();
            assert!(image.contains("alpine"), "{name}: `{image}` has no wget");
        }
    }
}

/// The Docker build context leaves build output and tooling out (`COPY . .` sent `target/`,
/// over a gigabyte).
#[test]
fn the_docker_build_context_leaves_target_out() {
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for pattern in ["target/", ".git/", "**/node_modules/"] {
        assert!(ignore.lines().any(|l| l.trim() == pattern), "{pattern}");
    }
}

#[test]
fn the_dockerfile_runs_the_release_build_and_the_readme_names_the_demo() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked --bin callgate"));
    assert!(dockerfile.contains("USER callgate") && dockerfile.contains("HEALTHCHECK"));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- demo"));
}
