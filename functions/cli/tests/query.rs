//! `aether query` as a process: flags wired, a down endpoint shown as down and
//! named in the answer (not fatal), the UI served, SIGTERM ends it.

use std::process::Command;
use std::time::Duration;

use harness::{free_port, Proc};

use harness::curl_get as curl;

#[test]
fn query_process_serves_with_a_down_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let dead = format!("127.0.0.1:{}", free_port());
    let sd = tmp.path().join("sd.yml");
    std::fs::write(&sd, "- targets: []\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aether"));
    cmd.args(["query", "--http-address", &http, "--grpc-address", &grpc])
        .args(["--store", &dead, "--query.replica-label=replica"])
        .arg(format!("--store.sd-files={}", sd.display()));
    let mut p = Proc::spawn("aether-query", &mut cmd, tmp.path().join("query.log")).unwrap();
    harness::wait_for_port(&http, Duration::from_secs(20)).unwrap();
    harness::wait_for_port(&grpc, Duration::from_secs(20)).unwrap();
    let url = format!("http://{http}");
    let (code, body) = curl(&format!("{url}/api/v1/endpoints"));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!(r#""address":"{dead}","health":"down""#)),
        "{body}"
    );
    // Strict by default: the down endpoint is the error.
    let (code, body) = curl(&format!("{url}/api/v1/query?query=up&time=100"));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains(&dead), "{body}");
    // Partial response on request: an empty answer with a warning naming it.
    let (code, body) = curl(&format!(
        "{url}/api/v1/query?query=up&time=100&partial_response=true"
    ));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""result":[]"#) && body.contains(&dead),
        "{body}"
    );
    let (code, body) = curl(&format!("{url}/"));
    assert_eq!(code, 200);
    assert!(body.contains("Aether query"));
    // /metrics counts the answers per handler and code (Thanos's names).
    let (code, body) = curl(&format!("{url}/metrics"));
    assert_eq!(code, 200);
    for line in [
        r#"http_requests_total{code="500",handler="query",method="get"} 1"#,
        r#"http_requests_total{code="200",handler="query",method="get"} 1"#,
        r#"http_request_duration_seconds_count{handler="query"} 2"#,
    ] {
        assert!(body.contains(line), "{line} missing:\n{body}");
    }
    p.stop(Duration::from_secs(10));
    assert!(p.exited(), "{}", p.log());
}
