//! Runs Prometheus's PromQL test scripts against the engine.
//!
//! Usage: `promqltest [DIR] [-v] [--list-failures] [--no-hist-skips]`. DIR defaults to
//! `$PROMQLTEST_DIR` or `../shared/promqltest/testdata` from the repo root. Prints per
//! file `file: P passed, F failed, S skipped` and a last line with the totals; exits
//! non-zero if a file in the required set (see `conformance.yaml`) has a failure.

use std::path::PathBuf;
use std::process::ExitCode;

use promql::promqltest::{default_dir, run_dir, Config};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v");
    let list = args.iter().any(|a| a == "--list-failures");
    let dir = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(default_dir);
    let mut cfg = Config::builtin();
    if args.iter().any(|a| a == "--no-hist-skips") {
        // Runs the evals skipped for native histograms, to see which pass now.
        cfg.skips
            .retain(|s| !s.reason.starts_with("native histograms"));
    }
    let reports = match run_dir(&dir, &cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let (mut p, mut f, mut s) = (0, 0, 0);
    let mut bad = false;
    for r in &reports {
        println!(
            "{}: {} passed, {} failed, {} skipped",
            r.name, r.passed, r.failed, r.skipped
        );
        if verbose {
            for (line, msg) in &r.failures {
                println!("    line {line}: {msg}");
            }
        }
        if list {
            for (line, msg) in &r.failures {
                let reason = if r.histogram_failures.contains(line) {
                    "native histograms: not fully supported yet".to_string()
                } else {
                    msg.replace('"', "'")
                };
                println!(
                    "  - {{file: {}, line: {line}, reason: \"{reason}\"}}",
                    r.name
                );
            }
        }
        p += r.passed;
        f += r.failed;
        s += r.skipped;
        if r.failed > 0 && cfg.required.contains(&r.name) {
            bad = true;
        }
    }
    println!("{p} passed, {f} failed, {s} skipped");
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
