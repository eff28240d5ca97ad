//! `k8s/prometheus-sidecar.yaml` is consistent with the sidecar: 2h blocks, S3
//! credentials only from the Secret, the objstore config parses, a named gRPC port.

use serde_yaml_ng::Value;

#[test]
fn manifest_is_consistent() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../k8s/prometheus-sidecar.yaml"
    ))
    .unwrap();
    let docs: Vec<Value> = text
        .split("\n---\n")
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
            .clone()
    };
    let cm = find("ConfigMap", "aether-objstore");
    let yaml = cm["data"]["objstore.yml"].as_str().unwrap();
    assert!(
        yaml.contains("${AWS_SECRET_ACCESS_KEY}"),
        "credentials are references only"
    );
    let cfg =
        bucket::ObjstoreConfig::parse_with_env(yaml, |k| Some(format!("value-of-{k}"))).unwrap();
    assert!(cfg.describe().contains("aether-metrics"));
    let secret = find("Secret", "aether-objstore-credentials");
    assert!(secret["stringData"]["AWS_SECRET_ACCESS_KEY"].is_string());

    let sts = find("StatefulSet", "prometheus");
    let containers = sts["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap();
    let args = |name: &str| -> Vec<String> {
        containers.iter().find(|c| c["name"] == name).unwrap()["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let p = args("prometheus");
    assert!(p.contains(&"--storage.tsdb.min-block-duration=2h".to_string()));
    assert!(p.contains(&"--storage.tsdb.max-block-duration=2h".to_string()));
    let s = args("aether-sidecar");
    assert_eq!(s[0], "sidecar");
    assert!(s.iter().any(|a| a.starts_with("--objstore.config-file=")));
    let side = containers
        .iter()
        .find(|c| c["name"] == "aether-sidecar")
        .unwrap();
    assert_eq!(
        side["envFrom"][0]["secretRef"]["name"],
        "aether-objstore-credentials"
    );

    let svc = find("Service", "aether-sidecar");
    let ports = svc["spec"]["ports"].as_sequence().unwrap();
    assert!(ports
        .iter()
        .any(|p| p["name"] == "grpc" && p["port"] == 10901));
}
