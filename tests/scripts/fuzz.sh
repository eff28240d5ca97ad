#!/usr/bin/env bash
# Runs every cargo-fuzz target of the project for N seconds each (default 60).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable toolchain build
# them, and `-s none` avoids needing a sanitizer runtime the toolchain may lack.
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")/../.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for dir in $(find shared functions -name fuzz -type d -path '*/fuzz' -maxdepth 3); do
  crate="$(dirname "$dir")"
  for t in $(cd "$crate" && cargo fuzz list); do
    echo "== fuzz $crate $t for ${secs}s"
    (cd "$crate" && cargo fuzz run -s none "$t" -- -max_total_time="$secs" -rss_limit_mb=4096)
  done
done
