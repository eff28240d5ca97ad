//! The harness itself: the real servers start, answer and stop.

#[test]
fn s3_server_starts_and_stops() {
    let mut s3 = harness::S3Server::start("smoke").expect("start SeaweedFS");
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/smoke/missing", s3.endpoint()))
        .output()
        .unwrap();
    // Anonymous request to a bucket with keys enforced: 403, or 404 for the key.
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(code == "403" || code == "404", "got HTTP {code}");
    s3.stop();
    assert!(s3.proc.exited());
}

#[test]
fn prometheus_starts_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let p = harness::Prometheus::start(
        "global:\n  scrape_interval: 1s\n",
        &dir.path().join("data"),
        &[],
    )
    .expect("start Prometheus");
    let body = p.get("/api/v1/query?query=1%2B1").unwrap();
    assert!(body.contains("\"2\""), "{body}");
}
