//! Runs Prometheus's PromQL test scripts; fails only when a required file has a failure.

use promql::promqltest::{default_dir, run_dir, Config};

#[test]
fn promql_conformance() {
    let dir = default_dir();
    if !dir.exists() {
        eprintln!("no PromQL test data at {}; skipping", dir.display());
        return;
    }
    let cfg = Config::builtin();
    let reports = run_dir(&dir, &cfg).expect("read test data");
    let mut bad = Vec::new();
    for r in &reports {
        println!(
            "{}: {} passed, {} failed, {} skipped",
            r.name, r.passed, r.failed, r.skipped
        );
        if cfg.required.contains(&r.name) {
            for (line, msg) in &r.failures {
                bad.push(format!("{}:{line}: {msg}", r.name));
            }
        }
    }
    for f in &cfg.required {
        assert!(
            reports.iter().any(|r| &r.name == f),
            "required file {f} not found"
        );
    }
    assert!(
        bad.is_empty(),
        "required conformance failures:\n{}",
        bad.join("\n")
    );
}
